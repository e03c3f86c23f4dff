// Helpers shared by the test suites: seeded inputs, running a variant, reference comparisons and
// tolerances scaled by float epsilon and magnitude (never copied numbers).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "attention/metrics.h"
#include "attention/reference.h"
#include "attention/registry.h"

namespace attnbench::testing {

inline constexpr double kFloatEps = std::numeric_limits<float>::epsilon();

// Gaussian [batch, heads, rows, cols] tensor with standard deviation `stddev`.
Tensor4 random_tensor(Index batch, Index heads, Index rows, Index cols, std::uint64_t seed,
                      double stddev = 1.0);

struct Inputs {
  Tensor4 q, k, v;
  KeyMask mask;  // empty unless the problem has key_padding
};

// Gaussian Q (scaled by `temperature`), K, V for `p`. With key_padding, batch entry b keeps its
// first n_k - b * (n_k / (batch + 1)) keys (so entry 0 is unpadded).
Inputs make_inputs(const Problem& p, std::uint64_t seed, double temperature = 1.0);

Problem make_problem(Index n_q, Index n_k, Index d, Index d_v, Index batch = 1, Index heads = 2,
                     bool causal = false, bool key_padding = false);

// Constructs `variant` and runs one forward.
Tensor4 run_variant(const std::string& variant, const Json& params, const Problem& p,
                    const Inputs& in);

// Error of `out` against the exact reference of the kind `kind` on every row.
ErrorMetrics error_vs_reference(const Tensor4& out, const Problem& p, const Inputs& in,
                                ReferenceKind kind = ReferenceKind::kSoftmax);

// Tolerance on max |O' - O| for an exact float32 computation: rounding of the logits
// (about eps * sqrt(d) * |scale q.k|, amplified by exp) plus rounding of the sums
// (eps * log2 n_k), times max |V|, with a safety factor.
double exact_tolerance(const Problem& p, const Inputs& in);

// Largest |x - y| between two tensors of the same shape; infinity on a shape mismatch.
double max_abs_diff(const Tensor4& x, const Tensor4& y);

bool all_finite(const Tensor4& t);

}  // namespace attnbench::testing
