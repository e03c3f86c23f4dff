// Helpers shared by the approximate family: contiguous segments (Linformer pooling, Nystrom
// landmarks), fixed work partitions that do not depend on the thread count (so reductions are
// bitwise reproducible), and small numeric utilities.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <span>

#include "attention/tensor.h"

namespace attnbench::approx {

using Stride = Eigen::OuterStride<>;
using StridedMap = Eigen::Map<RowMatrix, 0, Stride>;
using ConstStridedMap = Eigen::Map<const RowMatrix, 0, Stride>;

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Segment r of n rows split into m contiguous segments: [floor(r n / m), floor((r + 1) n / m)).
// Sizes differ by at most one; every segment is non-empty when m <= n.
inline Index segment_begin(Index r, Index n, Index m) { return (r * n) / m; }

// Splits [0, n) into `parts` near-equal spans; span t is [span_begin(t), span_begin(t + 1)).
struct Partition {
  Index n = 0, parts = 1;
  Index begin(Index t) const { return (t * n) / parts; }
  Index end(Index t) const { return ((t + 1) * n) / parts; }
};

// A partition of n rows into spans of about `target` rows, at most `max_parts` spans. It depends
// only on n, so per-span partial results reduce in the same order for any thread count.
inline Partition make_partition(Index n, Index target, Index max_parts) {
  const Index parts = std::clamp<Index>((n + target - 1) / std::max<Index>(target, 1), 1,
                                        std::max<Index>(max_parts, 1));
  return Partition{n, parts};
}

// Masked mean of the rows [r0, r1) of x (rows, cols) into out (cols); returns the number of
// valid rows (0: out is zero). valid is empty (all valid) or has one entry per row of x.
template <typename Out>
Index masked_segment_mean(const float* x, Index cols, Index r0, Index r1,
                          std::span<const std::uint8_t> valid, Out&& out) {
  out.setZero();
  Index count = 0;
  for (Index r = r0; r < r1; ++r) {
    if (!valid.empty() && !valid[r]) continue;
    out += Eigen::Map<const Eigen::RowVectorXf>(x + r * cols, cols);
    ++count;
  }
  if (count > 0) out /= float(count);
  return count;
}

// Row-wise softmax of s (rows, cols), in place, with -inf entries excluded; a row with no finite
// entry becomes all zeros (never NaN). Returns nothing; exp is Eigen's vectorised one.
inline void softmax_rows(StridedMap s) {
  if (s.cols() == 0) return;  // no keys: nothing to normalise (and no maximum to take)
  for (Index r = 0; r < s.rows(); ++r) {
    auto row = s.row(r).array();
    const float mx = row.maxCoeff();
    if (mx == kNegInf) {
      row.setZero();
      continue;
    }
    row = (row - mx).exp();
    row /= row.sum();
  }
}

}  // namespace attnbench::approx
