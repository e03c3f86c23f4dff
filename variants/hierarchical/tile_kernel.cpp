#include "variants/hierarchical/tile_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace attnbench::hierarchical {

AlignedFloats::AlignedFloats(Index count) : size_(count) {
  if (count <= 0) return;
  data_ = static_cast<float*>(
      ::operator new(static_cast<std::size_t>(count) * sizeof(float), std::align_val_t(64)));
  std::memset(data_, 0, static_cast<std::size_t>(count) * sizeof(float));
}

AlignedFloats::~AlignedFloats() {
  if (data_) ::operator delete(data_, std::align_val_t(64));
}

AlignedFloats::AlignedFloats(AlignedFloats&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AlignedFloats& AlignedFloats::operator=(AlignedFloats&& other) noexcept {
  if (this != &other) {
    if (data_) ::operator delete(data_, std::align_val_t(64));
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

namespace {
using Stride = Eigen::OuterStride<>;
using ConstStrided = Eigen::Map<const RowMatrix, 0, Stride>;
using Strided = Eigen::Map<RowMatrix, 0, Stride>;
}  // namespace

void tile_scores(const float* q, Index ldq, Index rows, Index d, float scale,
                 std::span<const KeySegment> segments, float* s, Index lds) {
  ConstStrided qm(q, rows, d, Stride(ldq));
  Index col = 0;
  for (const KeySegment& seg : segments) {
    ConstStrided km(seg.k, seg.count, d, Stride(seg.ldk));
    Strided sm(s + col, rows, seg.count, Stride(lds));
    sm.noalias() = scale * (qm * km.transpose());
    if (seg.bias) {
      for (Index r = 0; r < rows; ++r) {
        float* row = s + r * lds + col;
        for (Index c = 0; c < seg.count; ++c) row[c] += seg.bias[c];
      }
    }
    col += seg.count;
  }
}

namespace {

// exp(x - ref) in place and the sum of the results, for x <= ref (+ rounding). Arguments below
// -87 give exactly 0 (Eigen's vectorised exp returns about 3e-39 for -inf, which would give a
// fully masked row a nonzero sum). The sum runs in 8 fixed lanes and then a fixed tail, so it
// does not depend on the address of x.
float exp_shifted_sum(float* x, Index n, float ref) {
  Index i = 0;
  float total = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 vref = _mm256_set1_ps(ref);
  const __m256 lo = _mm256_set1_ps(-87.0f), hi = _mm256_set1_ps(88.0f);
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
  const __m256 c1 = _mm256_set1_ps(-0.693359375f), c2 = _mm256_set1_ps(2.12194440e-4f);
  const __m256 p0 = _mm256_set1_ps(1.9875691500e-4f), p1 = _mm256_set1_ps(1.3981999507e-3f);
  const __m256 p2 = _mm256_set1_ps(8.3334519073e-3f), p3 = _mm256_set1_ps(4.1665795894e-2f);
  const __m256 p4 = _mm256_set1_ps(1.6666665459e-1f), p5 = _mm256_set1_ps(5.0000001201e-1f);
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + i), vref);
    const __m256 keep = _mm256_cmp_ps(v, lo, _CMP_GE_OQ);  // false for -inf and NaN
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    const __m256 m =
        _mm256_round_ps(_mm256_mul_ps(xc, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(m, c1, xc);
    r = _mm256_fmadd_ps(m, c2, r);
    __m256 y = _mm256_fmadd_ps(p0, r, p1);
    y = _mm256_fmadd_ps(y, r, p2);
    y = _mm256_fmadd_ps(y, r, p3);
    y = _mm256_fmadd_ps(y, r, p4);
    y = _mm256_fmadd_ps(y, r, p5);
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, one));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(m), _mm256_set1_epi32(127)), 23);
    y = _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), keep);
    _mm256_storeu_ps(x + i, y);
    acc = _mm256_add_ps(acc, y);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  total = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) +
          ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
#endif
  for (; i < n; ++i) {
    const float v = x[i] - ref;
    x[i] = v >= -87.0f ? std::exp(v) : 0.0f;
    total += x[i];
  }
  return total;
}

float row_max(const float* x, Index n) {
  float m = kNegInf;
  for (Index i = 0; i < n; ++i) m = std::max(m, x[i]);  // max is exact in any order
  return m;
}

}  // namespace

void tile_softmax(float* s, Index lds, Index rows, Index cols, const float* m_in, float* m_out,
                  float* alpha, float* rowsum) {
  for (Index r = 0; r < rows; ++r) {
    float* row = s + r * lds;
    const float m_old = m_in ? m_in[r] : kNegInf;
    const float m_new = std::max(m_old, row_max(row, cols));
    const float ref = m_new == kNegInf ? 0.0f : m_new;  // every entry excluded so far
    rowsum[r] = exp_shifted_sum(row, cols, ref);
    alpha[r] = std::exp(m_old - ref);
    m_out[r] = m_new;
  }
}

void tile_values(const float* p, Index ldp, Index rows, std::span<const KeySegment> segments,
                 Index d_v, float* acc, Index ld_acc) {
  Strided am(acc, rows, d_v, Stride(ld_acc));
  Index col = 0;
  bool first = true;
  for (const KeySegment& seg : segments) {
    ConstStrided pm(p + col, rows, seg.count, Stride(ldp));
    ConstStrided vm(seg.v, seg.count, d_v, Stride(seg.ldv));
    if (first) {
      am.noalias() = pm * vm;
    } else {
      am.noalias() += pm * vm;
    }
    first = false;
    col += seg.count;
  }
  if (first) am.setZero();
}

}  // namespace attnbench::hierarchical
