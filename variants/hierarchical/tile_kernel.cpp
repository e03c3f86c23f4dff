#include "variants/hierarchical/tile_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <utility>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ATTNBENCH_HIER_AVX2 1
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

// Keys (scores) or rows (values) per register block: 6 x 16 = 12 accumulators, plus two operand
// vectors and one broadcast, fit the 16 AVX2 registers.
constexpr int kBlock = 6;

template <typename F>
void for_blocks(Index count, F&& f) {
  for (Index i0 = 0; i0 < count; i0 += kBlock) {
    switch (std::min<Index>(kBlock, count - i0)) {
      case 6:
        f(i0, std::integral_constant<int, 6>{});
        break;
      case 5:
        f(i0, std::integral_constant<int, 5>{});
        break;
      case 4:
        f(i0, std::integral_constant<int, 4>{});
        break;
      case 3:
        f(i0, std::integral_constant<int, 3>{});
        break;
      case 2:
        f(i0, std::integral_constant<int, 2>{});
        break;
      default:
        f(i0, std::integral_constant<int, 1>{});
        break;
    }
  }
}

#ifdef ATTNBENCH_HIER_AVX2

// Scores of keys [0, R) x rows [0, 16): st[i][.] = scale * k_i . q + bias_i.
template <int R>
void score_block(const float* qt, Index ldqt, Index d, float scale, const float* k, Index ldk,
                 const float* bias, float* st, Index ld) {
  __m256 acc[R][2];
  for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (Index x = 0; x < d; ++x) {
    const __m256 q0 = _mm256_loadu_ps(qt + x * ldqt);
    const __m256 q1 = _mm256_loadu_ps(qt + x * ldqt + 8);
    for (int i = 0; i < R; ++i) {
      const __m256 b = _mm256_broadcast_ss(k + i * ldk + x);
      acc[i][0] = _mm256_fmadd_ps(b, q0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(b, q1, acc[i][1]);
    }
  }
  const __m256 vscale = _mm256_set1_ps(scale);
  for (int i = 0; i < R; ++i) {
    const __m256 b = bias ? _mm256_broadcast_ss(bias + i) : _mm256_setzero_ps();
    _mm256_storeu_ps(st + i * ld, _mm256_fmadd_ps(acc[i][0], vscale, b));
    _mm256_storeu_ps(st + i * ld + 8, _mm256_fmadd_ps(acc[i][1], vscale, b));
  }
}

// Lanes [0, width) of a vector of 8.
__m256i lane_mask(Index width) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::clamp<Index>(width, 0, 8))), lanes);
}

// The register block of tile_values: rows [r0, r0 + R) x columns [x0, x0 + 16) of the output.
// kFull: all 16 columns exist; otherwise the first `width` (masked loads and stores, so that no
// value row is read past its end).
template <int R, bool kFull>
void value_block(const float* pt, Index ld, Index r0, std::span<const KeySegment> segments,
                 Index x0, Index width, const ValueTarget& t) {
  __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
  if constexpr (!kFull) {
    m0 = lane_mask(width);
    m1 = lane_mask(width - 8);
  }
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) {
    if (t.y_in) {
      const float* yp = t.y_in + ((t.in_first + r0 + r) >> t.in_shift) * t.ld_in + x0;
      const __m256 a = _mm256_broadcast_ss(t.alpha + r0 + r);
      if constexpr (kFull) {
        acc[r][0] = _mm256_mul_ps(a, _mm256_loadu_ps(yp));
        acc[r][1] = _mm256_mul_ps(a, _mm256_loadu_ps(yp + 8));
      } else {
        acc[r][0] = _mm256_mul_ps(a, _mm256_maskload_ps(yp, m0));
        acc[r][1] = _mm256_mul_ps(a, _mm256_maskload_ps(yp + 8, m1));
      }
    } else {
      acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    }
  }
  const float* pc = pt + r0;
  for (const KeySegment& seg : segments) {
    const float* v = seg.v + x0;
    const Index ldv = seg.ldv, count = seg.count;
    for (Index c = 0; c < count; ++c, v += ldv, pc += ld) {
      __m256 v0, v1;
      if constexpr (kFull) {
        v0 = _mm256_loadu_ps(v);
        v1 = _mm256_loadu_ps(v + 8);
      } else {
        v0 = _mm256_maskload_ps(v, m0);
        v1 = _mm256_maskload_ps(v + 8, m1);
      }
      for (int r = 0; r < R; ++r) {
        const __m256 b = _mm256_broadcast_ss(pc + r);
        acc[r][0] = _mm256_fmadd_ps(b, v0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(b, v1, acc[r][1]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float* y = t.y_out + (r0 + r) * t.ld_out + x0;
    __m256 y0 = acc[r][0], y1 = acc[r][1];
    if (t.out_scale) {
      const __m256 sc = _mm256_broadcast_ss(t.out_scale + r0 + r);
      y0 = _mm256_mul_ps(y0, sc);
      y1 = _mm256_mul_ps(y1, sc);
    }
    if constexpr (kFull) {
      _mm256_storeu_ps(y, y0);
      _mm256_storeu_ps(y + 8, y1);
    } else {
      _mm256_maskstore_ps(y, m0, y0);
      _mm256_maskstore_ps(y + 8, m1, y1);
    }
  }
}

// exp(v) for v <= 0 (Cephes' single-precision polynomial, about 1 ulp). Arguments below -87
// give exactly 0: Eigen's vectorised exp returns about 3e-39 for -inf, which would give a fully
// masked row a nonzero sum (and keys more than 87 below the row maximum weigh < 2e-38).
inline __m256 exp_nonpositive(__m256 v) {
  const __m256 lo = _mm256_set1_ps(-87.0f);
  const __m256 keep = _mm256_cmp_ps(v, lo, _CMP_GE_OQ);  // false for -inf and NaN
  const __m256 x = _mm256_max_ps(v, lo);
  const __m256 m = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(m, _mm256_set1_ps(-0.693359375f), x);
  r = _mm256_fmadd_ps(m, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 y = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(m), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), keep);
}

#else  // portable fallback

template <int R>
void score_block(const float* qt, Index ldqt, Index d, float scale, const float* k, Index ldk,
                 const float* bias, float* st, Index ld) {
  for (int i = 0; i < R; ++i) {
    for (Index r = 0; r < 16; ++r) {
      float acc = 0.0f;
      for (Index x = 0; x < d; ++x) acc += k[i * ldk + x] * qt[x * ldqt + r];
      st[i * ld + r] = acc * scale + (bias ? bias[i] : 0.0f);
    }
  }
}

float exp_nonpositive(float v) { return v >= -87.0f ? std::exp(v) : 0.0f; }

#endif

}  // namespace

void tile_scores(const float* qt, Index ldqt, Index rows, Index d, float scale,
                 std::span<const KeySegment> segments, float* st, Index ld) {
  // Row-chunk-major: one chunk of transposed queries (d x 16) stays in L1 while the keys pass.
  for (Index r0 = 0; r0 < rows; r0 += 16) {
    Index col = 0;
    for (const KeySegment& seg : segments) {
      for_blocks(seg.count, [&](Index c0, auto kb) {
        score_block<decltype(kb)::value>(qt + r0, ldqt, d, scale, seg.k + c0 * seg.ldk, seg.ldk,
                                         seg.bias ? seg.bias + c0 : nullptr,
                                         st + (col + c0) * ld + r0, ld);
      });
      col += seg.count;
    }
  }
}

void tile_softmax(float* st, Index ld, Index rows, Index cols, const float* m_in, float* m_out,
                  float* alpha, float* rowsum) {
#ifdef ATTNBENCH_HIER_AVX2
  const __m256 neg_inf = _mm256_set1_ps(kNegInf), zero = _mm256_setzero_ps();
  for (Index r0 = 0; r0 < rows; r0 += 8) {
    const __m256 m_old = m_in ? _mm256_loadu_ps(m_in + r0) : neg_inf;
    __m256 m = m_old;
    for (Index c = 0; c < cols; ++c) m = _mm256_max_ps(m, _mm256_loadu_ps(st + c * ld + r0));
    // Rows with every entry excluded so far use 0 as their reference.
    const __m256 ref = _mm256_blendv_ps(m, zero, _mm256_cmp_ps(m, neg_inf, _CMP_EQ_OQ));
    __m256 sum = zero;
    for (Index c = 0; c < cols; ++c) {
      float* p = st + c * ld + r0;
      const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(p), ref));
      _mm256_storeu_ps(p, e);
      sum = _mm256_add_ps(sum, e);
    }
    _mm256_storeu_ps(m_out + r0, m);
    _mm256_storeu_ps(rowsum + r0, sum);
    _mm256_storeu_ps(alpha + r0, exp_nonpositive(_mm256_sub_ps(m_old, ref)));
  }
#else
  for (Index r = 0; r < rows; ++r) {
    const float m_old = m_in ? m_in[r] : kNegInf;
    float m = m_old;
    for (Index c = 0; c < cols; ++c) m = std::max(m, st[c * ld + r]);
    const float ref = m == kNegInf ? 0.0f : m;
    float sum = 0.0f;
    for (Index c = 0; c < cols; ++c) {
      st[c * ld + r] = exp_nonpositive(st[c * ld + r] - ref);
      sum += st[c * ld + r];
    }
    m_out[r] = m;
    rowsum[r] = sum;
    alpha[r] = exp_nonpositive(m_old - ref);
  }
#endif
}

void tile_values(const float* pt, Index ld, Index rows, std::span<const KeySegment> segments,
                 Index d_v, const ValueTarget& t) {
#ifdef ATTNBENCH_HIER_AVX2
  // Column-chunk-major: one chunk of values (keys x 16) stays in L1 across row blocks.
  for (Index x0 = 0; x0 < d_v; x0 += 16) {
    const Index width = std::min<Index>(16, d_v - x0);
    for_blocks(rows, [&](Index r0, auto rb) {
      if (width == 16) {
        value_block<decltype(rb)::value, true>(pt, ld, r0, segments, x0, width, t);
      } else {
        value_block<decltype(rb)::value, false>(pt, ld, r0, segments, x0, width, t);
      }
    });
  }
#else
  for (Index r = 0; r < rows; ++r) {
    float* y = t.y_out + r * t.ld_out;
    for (Index x = 0; x < d_v; ++x) {
      float acc =
          t.y_in ? t.alpha[r] * t.y_in[((t.in_first + r) >> t.in_shift) * t.ld_in + x] : 0.0f;
      Index col = 0;
      for (const KeySegment& seg : segments) {
        for (Index c = 0; c < seg.count; ++c)
          acc += pt[(col + c) * ld + r] * seg.v[c * seg.ldv + x];
        col += seg.count;
      }
      y[x] = t.out_scale ? acc * t.out_scale[r] : acc;
    }
  }
#endif
}

void transpose(const float* src, Index ld_src, Index rows, Index cols, float* dst, Index ld_dst) {
  Index r0 = 0;
#ifdef ATTNBENCH_HIER_AVX2
  // 8 x 8 register transposes: a scalar transpose writes one float per cache line touched.
  for (; r0 + 8 <= rows; r0 += 8) {
    Index x0 = 0;
    for (; x0 + 8 <= cols; x0 += 8) {
      __m256 r[8], t[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (r0 + i) * ld_src + x0);
      for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
      }
      for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
      }
      for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(dst + (x0 + i) * ld_dst + r0,
                         _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (x0 + i + 4) * ld_dst + r0,
                         _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
      }
    }
    for (; x0 < cols; ++x0) {
      for (Index i = 0; i < 8; ++i) dst[x0 * ld_dst + r0 + i] = src[(r0 + i) * ld_src + x0];
    }
  }
#endif
  for (; r0 < rows; ++r0) {
    for (Index x = 0; x < cols; ++x) dst[x * ld_dst + r0] = src[r0 * ld_src + x];
  }
}

}  // namespace attnbench::hierarchical
