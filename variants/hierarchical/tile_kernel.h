// Tile kernel shared by the hierarchical variants: a tile is a few query rows against a few
// segments of consecutive keys, merged by log-sum-exp into a running per-row state (m, z, y).
// Time O(rows * keys * (d + d_v)) per tile, memory O(rows * keys) scratch per thread.
// Zhu & Soricut, "H-Transformer-1D", ACL 2021 (arXiv 2107.11906), §3-4.
#pragma once

#include <cstddef>
#include <limits>
#include <new>
#include <span>

#include "attention/tensor.h"

namespace attnbench::hierarchical {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Rounds a row length up to 16 floats (64 bytes), so that every row of every workspace starts at
// the same address modulo 64: Eigen peels reductions to alignment, and equal alignment in every
// thread's workspace keeps the summation order, hence the output, bitwise the same for any
// thread count.
inline Index padded_stride(Index cols) { return (cols + 15) / 16 * 16; }

// A zero-initialised, 64-byte aligned float array (zeroing in setup touches every page, so the
// timed forward pays no first-touch faults).
class AlignedFloats {
 public:
  AlignedFloats() = default;
  explicit AlignedFloats(Index count);
  ~AlignedFloats();
  AlignedFloats(AlignedFloats&& other) noexcept;
  AlignedFloats& operator=(AlignedFloats&& other) noexcept;
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  Index size() const { return size_; }

 private:
  float* data_ = nullptr;
  Index size_ = 0;
};

// `count` consecutive keys: k (count, d) stride ldk, v (count, d_v) stride ldv, and an optional
// additive logit bias per key (null = 0). A coarse key standing for c tokens carries bias log c
// (the count factor: weight c * exp(s)) and the mean of their values, which is the paper's
// "sum of values over c * exp(s)" in a form whose magnitudes stay those of V; bias -inf
// excludes a key (padding, c = 0).
struct KeySegment {
  const float* k = nullptr;
  Index ldk = 0;
  const float* v = nullptr;
  Index ldv = 0;
  const float* bias = nullptr;
  Index count = 0;
};

// s (rows, sum of segment counts) stride lds = scale * q k^T + bias, segments side by side.
// q (rows, d) stride ldq.
void tile_scores(const float* q, Index ldq, Index rows, Index d, float scale,
                 std::span<const KeySegment> segments, float* s, Index lds);

// Per row i: m_out[i] = max(m_in[i], max_c s[i, c]) (m_in null = -inf); s becomes
// exp(s - m_out) in place; alpha[i] = exp(m_in[i] - m_out[i]); rowsum[i] = sum_c s[i, c].
// A row with nothing allowed yet (m_out = -inf) uses 0 as its reference, so exp(-inf - -inf)
// is never evaluated: its probabilities and alpha are 0.
void tile_softmax(float* s, Index lds, Index rows, Index cols, const float* m_in, float* m_out,
                  float* alpha, float* rowsum);

// acc (rows, d_v) stride ld_acc = p v, with p the (rows, cols) probabilities of tile_softmax
// and v the segments' values, side by side as in tile_scores.
void tile_values(const float* p, Index ldp, Index rows, std::span<const KeySegment> segments,
                 Index d_v, float* acc, Index ld_acc);

}  // namespace attnbench::hierarchical
