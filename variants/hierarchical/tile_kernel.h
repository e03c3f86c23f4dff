// Tile kernel shared by the hierarchical variants: a tile is up to Nr query rows against a few
// segments of keys, merged by log-sum-exp into a running per-row state (m, z, y).
// Time O(rows * keys * (d + d_v)) per tile, memory O(rows * (keys + d)) scratch per thread.
// Zhu & Soricut, "H-Transformer-1D", ACL 2021 (arXiv 2107.11906), §3-4.
//
// Tiles are small (32 x 96 at Nr = 32), too small for a packing GEMM: Eigen spent as long
// packing operands as multiplying them. These kernels work on the transposed score tile
// st[key][row] instead: the tile's queries are transposed once (d x rows, so 16 rows are two
// AVX2 vectors) while keys and values stay row-major as given; a 6 x 16 register block (12
// accumulators) computes scores with the logit scale and the count-factor bias fused into its
// store, the softmax runs down the keys for 8 rows at a time (no horizontal reductions), and a
// second 6 x 16 block accumulates weights x values starting from the parent level's rescaled
// state and ending with the normalisation.
#pragma once

#include <cstddef>
#include <limits>
#include <new>
#include <span>

#include "attention/tensor.h"

namespace attnbench::hierarchical {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Rounds a length up to 16 floats (64 bytes, two AVX2 vectors).
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

// `count` consecutive keys k (count, d) and values v (count, d_v), row-major with strides ldk and
// ldv, and an optional additive logit bias per key (null = 0). A coarse key standing for c
// tokens carries bias log c (the count factor: weight c * exp(s)) and the mean of their values,
// which is the paper's "sum of values over c * exp(s)" with magnitudes those of V; bias -inf
// excludes a key (padding, c = 0).
struct KeySegment {
  const float* k = nullptr;
  Index ldk = 0;
  const float* v = nullptr;
  Index ldv = 0;
  const float* bias = nullptr;
  Index count = 0;
};

// A tile's transposed scores and probabilities: st[c * ld + r] for key c (segments one after
// another) and row r. ld must be a multiple of 16 and >= rows; the kernels compute whole
// 16-row chunks, and the lanes past `rows` hold values of no meaning.
//
// qt (d rows, stride ldqt >= padded_stride(rows)) = the tile's queries transposed; lanes past
// `rows` must be finite (any values).
void tile_scores(const float* qt, Index ldqt, Index rows, Index d, float scale,
                 std::span<const KeySegment> segments, float* st, Index ld);

// Per row r (lanes of 8 rows at a time): m_out[r] = max(m_in[r], max_c st[c][r]) (m_in null =
// -inf); st becomes exp(st - m_out) in place; alpha[r] = exp(m_in[r] - m_out[r]);
// rowsum[r] = sum_c st[c][r]. A row with nothing allowed yet (m_out = -inf) uses 0 as its
// reference, so exp(-inf - -inf) is never evaluated: its probabilities and alpha are 0.
// m_in, m_out, alpha and rowsum hold padded_stride(rows) entries.
void tile_softmax(float* st, Index ld, Index rows, Index cols, const float* m_in, float* m_out,
                  float* alpha, float* rowsum);

// Where tile_values reads the previous state and writes the result. Row r of the tile:
//   y_out[r] = out_scale[r] * (alpha[r] * y_in[(in_first + r) >> in_shift] + sum_c p[c][r] v[c])
// with y_in null meaning no previous state and out_scale null meaning 1.
struct ValueTarget {
  const float* y_in = nullptr;
  Index ld_in = 0;
  Index in_first = 0;
  int in_shift = 0;
  const float* alpha = nullptr;
  float* y_out = nullptr;
  Index ld_out = 0;
  const float* out_scale = nullptr;
};

// pt: the transposed probabilities of tile_softmax (stride ld), segments as in tile_scores.
void tile_values(const float* pt, Index ld, Index rows, std::span<const KeySegment> segments,
                 Index d_v, const ValueTarget& target);

// dst (cols rows, stride ld_dst) = the transpose of `rows` rows of src (row-major, stride
// ld_src, `cols` columns).
void transpose(const float* src, Index ld_src, Index rows, Index cols, float* dst, Index ld_dst);

}  // namespace attnbench::hierarchical
