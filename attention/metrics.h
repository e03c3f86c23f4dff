// Error metrics of a variant's output against the exact reference (reference/variants.md §7),
// and the exact attention's own statistics on the compared rows.
#pragma once

#include <vector>

#include "attention/params.h"
#include "attention/reference.h"
#include "attention/tensor.h"

namespace attnbench {

struct ErrorMetrics {
  Index heads = 0;                // (batch, head) slices compared
  Index rows_per_head = 0;        // query rows evaluated per head (all, or a seeded sample)
  Index rows_compared = 0;        // rows with at least one allowed key, over all heads
  Index rows_fully_masked = 0;    // rows with no allowed key (their output must be 0)
  Index rows_cosine_skipped = 0;  // |o_i| < 1e-12 |V|_F: cosine undefined
  Index nonfinite = 0;            // NaN or Inf entries in the compared output rows

  double rel_fro = 0;             // |O' - O|_F / |O|_F over every compared row of every head
  double rel_fro_mean = 0;        // mean over heads of the per-head relative error
  double rel_fro_max = 0;         // max over heads
  double max_abs = 0;             // max |O' - O|
  double max_abs_over_max_v = 0;  // max_abs / max |V|
  double cos_mean = 1, cos_p5 = 1, cos_min = 1;  // per-row cosine similarity
  // Error relative to uniform attention, |O' - O|_F / |Obar - O|_F where Obar averages V over
  // the allowed keys: below 1 the variant beats "no attention at all".
  double rel_uniform = 0;
  double masked_rows_max_abs = 0;  // largest |o'| on fully masked rows (must be 0)

  // Exact attention statistics on the compared rows (rows with more than one allowed key):
  double entropy_ratio = 0;  // mean of H_i / log|A_i|
  double n_eff_ratio = 0;    // mean of n_eff,i / |A_i|, n_eff = 1 / sum_j p_ij^2
  double max_weight = 0;     // mean of max_j p_ij

  Json to_json() const;
};

// out: the variant's [batch, heads, n_q, d_v] output; ref: reference_attention() on the same
// inputs (index b * heads + h); v: the values (for max |V|).
ErrorMetrics compute_error(const Tensor4& out, const Tensor4& v,
                           const std::vector<HeadReference>& ref);

}  // namespace attnbench
