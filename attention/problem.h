// The geometry a variant is set up for, and the masks every variant shares.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>

#include "attention/tensor.h"

namespace attnbench {

// One attention problem: Q [batch, heads, n_q, d], K [batch, heads, n_k, d],
// V [batch, heads, n_k, d_v], O [batch, heads, n_q, d_v].
//
// Causal alignment is bottom-right, as in FlashAttention >= 2.1: query i may see key j iff
// j <= i + (n_k - n_q). For n_q = n_k that is j <= i. When n_q > n_k the first n_q - n_k query
// rows see no key at all and output zeros. (PyTorch's is_causal uses top-left alignment,
// j <= i; pass n_q = n_k to get the same result from both.)
struct Problem {
  Index batch = 1;
  Index heads = 1;
  Index n_q = 0;
  Index n_k = 0;
  Index d = 0;
  Index d_v = 0;
  bool causal = false;
  // Whether forward() will be given a key-padding mask. Variants that cannot honour one refuse
  // it at construction.
  bool key_padding = false;
  // Logit scale; 0 means the default 1/sqrt(d).
  double scale = 0.0;

  double effective_scale() const { return scale > 0.0 ? scale : 1.0 / std::sqrt(double(d)); }

  // Last key index query row i may see under the causal mask (may be negative: no key).
  Index causal_last_key(Index i) const { return i + (n_k - n_q); }

  bool allowed(Index i, Index j) const { return !causal || j <= causal_last_key(i); }

  std::string to_string() const {
    return "batch=" + std::to_string(batch) + " heads=" + std::to_string(heads) +
           " n_q=" + std::to_string(n_q) + " n_k=" + std::to_string(n_k) +
           " d=" + std::to_string(d) + " d_v=" + std::to_string(d_v) + (causal ? " causal" : "") +
           (key_padding ? " key_padding" : "");
  }

  void validate() const {
    auto need = [](bool ok, const std::string& field, Index value, const char* expected) {
      if (!ok) {
        throw std::invalid_argument("problem: " + field + " = " + std::to_string(value) +
                                    ", expected " + expected);
      }
    };
    need(batch >= 1, "batch", batch, ">= 1");
    need(heads >= 1, "heads", heads, ">= 1");
    need(n_q >= 1, "n_q", n_q, ">= 1");
    need(n_k >= 1, "n_k", n_k, ">= 1");
    need(d >= 1, "d", d, ">= 1");
    need(d_v >= 1, "d_v", d_v, ">= 1");
    if (!(scale >= 0.0) || !std::isfinite(scale)) {
      throw std::invalid_argument("problem: scale = " + std::to_string(scale) +
                                  ", expected a finite value >= 0 (0 = 1/sqrt(d))");
    }
  }
};

}  // namespace attnbench
