// Tile kernel shared by the hierarchical variants: a tile is up to Nr query rows against a few
// segments of keys, merged by log-sum-exp into a running per-row state (m, z, y).
// Time O(rows * keys * (d + d_v)) per tile, memory O(rows * keys) scratch per thread.
// Zhu & Soricut, "H-Transformer-1D", ACL 2021 (arXiv 2107.11906), §3-4.
//
// Tiles are small (32 x 96 at Nr = 32), too small for a packing GEMM: Eigen spent as long
// packing operands as multiplying them. These kernels instead read the keys pre-transposed
// (kt[x][c], so that 16 keys are two AVX2 vectors) and the values row-major, keep a 6 x 16 block
// of results in 12 registers, and fuse the logit scale, the count-factor bias, the merge with the
// parent level's state and the final normalisation into their loads and stores.
#pragma once

#include <cstddef>
#include <limits>
#include <new>
#include <span>

#include "attention/tensor.h"

namespace attnbench::hierarchical {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The score kernel reads and writes whole 16-key chunks: transposed-key rows, bias arrays and
// score rows must stay readable (and, for scores, writable) kSlack floats past their last key.
inline constexpr Index kSlack = 16;

// Rounds a row length up to 16 floats (64 bytes).
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

// `count` keys: transposed keys kt (d rows, stride ldkt; kt[x * ldkt + c] is component x of key
// c), values v (count, d_v) row-major with stride ldv, and an optional additive logit bias per
// key (null = 0). A coarse key standing for c tokens carries bias log c (the count factor:
// weight c * exp(s)) and the mean of their values, which is the paper's "sum of values over
// c * exp(s)" with magnitudes those of V; bias -inf excludes a key (padding, c = 0).
// kt rows and bias must be readable kSlack floats past `count`.
struct KeySegment {
  const float* kt = nullptr;
  Index ldkt = 0;
  const float* v = nullptr;
  Index ldv = 0;
  const float* bias = nullptr;
  Index count = 0;
};

// s (rows, sum of counts) stride lds = scale * q k^T + bias, segments side by side; q (rows, d)
// row-major, stride ldq. Writes up to kSlack floats past the last column of each row.
void tile_scores(const float* q, Index ldq, Index rows, Index d, float scale,
                 std::span<const KeySegment> segments, float* s, Index lds);

// Per row i: m_out[i] = max(m_in[i], max_c s[i, c]) (m_in null = -inf); s becomes
// exp(s - m_out) in place; alpha[i] = exp(m_in[i] - m_out[i]); rowsum[i] = sum_c s[i, c].
// A row with nothing allowed yet (m_out = -inf) uses 0 as its reference, so exp(-inf - -inf)
// is never evaluated: its probabilities and alpha are 0.
void tile_softmax(float* s, Index lds, Index rows, Index cols, const float* m_in, float* m_out,
                  float* alpha, float* rowsum);

// Where tile_values reads the previous state and writes the result. Row r of the tile:
//   y_out[r] = out_scale[r] * (alpha[r] * y_in[(in_first + r) >> in_shift] + sum_c p[r, c] v[c])
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

// p (rows, cols) stride ldp: the probabilities of tile_softmax, segments side by side.
void tile_values(const float* p, Index ldp, Index rows, std::span<const KeySegment> segments,
                 Index d_v, const ValueTarget& target);

// kt (d rows, stride ldkt) = the transpose of `count` rows of k (row-major, stride ldk).
void transpose_keys(const float* k, Index ldk, Index count, Index d, float* kt, Index ldkt);

// One level of key coarsening in the transposed layout (d rows, stride ld): output column c is
// wa[c] * column 2c + wb[c] * column 2c + 1 of in_lo for c < half, and of in_hi (whose column 0
// is token `half`'s first child) for half <= c < tokens.
void coarsen_keys(const float* in_lo, const float* in_hi, Index ld, Index half, Index tokens,
                  Index d, const float* wa, const float* wb, float* out);

}  // namespace attnbench::hierarchical
