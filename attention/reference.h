// The exact reference: softmax attention in double precision, tiled over keys so that its memory
// is O(n*d) (never an n_q x n_k matrix), evaluated on all query rows or on a chosen subset, in
// parallel over heads and row tiles with oneTBB. Every error figure is measured against it.
//
// For each evaluated row i with allowed set A_i (causal, key padding, and for the shared-QK
// kind "not self unless alone"), it returns o_i, lse_i, the uniform-attention output (mean of
// v_j over A_i) and the row's statistics: entropy, sum of squared weights (n_eff = 1/sum) and
// the maximum weight. A row with A_i empty has o_i = 0 and lse_i = -inf.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "attention/problem.h"
#include "attention/registry.h"
#include "attention/tensor.h"

namespace attnbench {

struct HeadReference {
  std::vector<Index> rows;         // evaluated query rows, ascending
  RowMatrixD out;                  // (rows, d_v)
  RowMatrixD uniform;              // (rows, d_v): mean of v over the allowed keys
  std::vector<double> lse;         // log-sum-exp of the logits; -inf when fully masked
  std::vector<double> entropy;     // nats
  std::vector<double> sum_p2;      // sum_j p_ij^2 (n_eff = 1 / sum_p2)
  std::vector<double> max_weight;  // max_j p_ij
  std::vector<Index> allowed;      // |A_i|
};

// An extra element mask for "exact attention restricted to a pattern": allowed(bh, i, j) is
// called for every (row, key) pair that causal and padding allow, with bh = b * heads + h.
// Used by tests of sparse patterns and of LSH's union-of-buckets semantics.
using ElementMask = std::function<bool(Index bh, Index i, Index j)>;

// One head. For kSharedQkSoftmax the keys are q_j / |q_j| (k is ignored; n_q must equal n_k)
// and the diagonal is excluded unless it is the row's only allowed key.
void reference_head(ConstMatRef q, ConstMatRef k, ConstMatRef v,
                    std::span<const std::uint8_t> key_valid, const Problem& problem,
                    ReferenceKind kind, std::span<const Index> rows, HeadReference& result,
                    const ElementMask& extra = {}, Index bh = 0);

// All heads, rows shared by every head. Result index = b * heads + h.
std::vector<HeadReference> reference_attention(const Tensor4& q, const Tensor4& k, const Tensor4& v,
                                               const KeyMask& mask, const Problem& problem,
                                               ReferenceKind kind, std::span<const Index> rows,
                                               const ElementMask& extra = {});

// Every row when n_q <= max_all_rows, else a seeded uniform sample of `sample` distinct rows
// (sorted). The harness records the count.
std::vector<Index> select_rows(Index n_q, Index max_all_rows, Index sample, std::uint64_t seed);

// All rows 0..n-1.
std::vector<Index> all_rows(Index n);

}  // namespace attnbench
