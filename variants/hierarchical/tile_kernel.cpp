#include "variants/hierarchical/tile_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
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

// Rows per register block: 6 rows x 16 columns = 12 accumulators, plus two operand vectors and
// one broadcast, fit the 16 AVX2 registers.
constexpr int kRowBlock = 6;

#ifdef ATTNBENCH_HIER_AVX2

// One register block of tile_scores: rows [0, R) x keys [0, 16) of a chunk (kt and bias point
// at the chunk's first key; s at its first score).
template <int R>
void score_block(const float* q, Index ldq, Index d, float scale, const float* kt, Index ldkt,
                 const float* bias, float* s, Index lds) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (Index x = 0; x < d; ++x) {
    const __m256 k0 = _mm256_loadu_ps(kt + x * ldkt);
    const __m256 k1 = _mm256_loadu_ps(kt + x * ldkt + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 b = _mm256_broadcast_ss(q + r * ldq + x);
      acc[r][0] = _mm256_fmadd_ps(b, k0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(b, k1, acc[r][1]);
    }
  }
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
  const __m256 b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(s + r * lds, _mm256_fmadd_ps(acc[r][0], vscale, b0));
    _mm256_storeu_ps(s + r * lds + 8, _mm256_fmadd_ps(acc[r][1], vscale, b1));
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
void value_block(const float* p, Index ldp, Index r0, std::span<const KeySegment> segments,
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
  const float* pc = p + r0 * ldp;
  for (const KeySegment& seg : segments) {
    const float* v = seg.v + x0;
    const Index ldv = seg.ldv;
    for (Index c = 0; c < seg.count; ++c, v += ldv) {
      __m256 v0, v1;
      if constexpr (kFull) {
        v0 = _mm256_loadu_ps(v);
        v1 = _mm256_loadu_ps(v + 8);
      } else {
        v0 = _mm256_maskload_ps(v, m0);
        v1 = _mm256_maskload_ps(v + 8, m1);
      }
      for (int r = 0; r < R; ++r) {
        const __m256 b = _mm256_broadcast_ss(pc + r * ldp + c);
        acc[r][0] = _mm256_fmadd_ps(b, v0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(b, v1, acc[r][1]);
      }
    }
    pc += seg.count;
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

#else  // portable fallback

template <int R>
void score_block(const float* q, Index ldq, Index d, float scale, const float* kt, Index ldkt,
                 const float* bias, float* s, Index lds) {
  for (int r = 0; r < R; ++r) {
    for (Index c = 0; c < 16; ++c) {
      float acc = 0.0f;
      for (Index x = 0; x < d; ++x) acc += q[r * ldq + x] * kt[x * ldkt + c];
      s[r * lds + c] = acc * scale + (bias ? bias[c] : 0.0f);
    }
  }
}

template <int R>
void value_rows(const float* p, Index ldp, Index r0, std::span<const KeySegment> segments,
                Index d_v, const ValueTarget& t) {
  for (int r = 0; r < R; ++r) {
    float* y = t.y_out + (r0 + r) * t.ld_out;
    for (Index x = 0; x < d_v; ++x) {
      float acc = 0.0f;
      if (t.y_in) {
        acc = t.alpha[r0 + r] * t.y_in[((t.in_first + r0 + r) >> t.in_shift) * t.ld_in + x];
      }
      Index col = 0;
      for (const KeySegment& seg : segments) {
        for (Index c = 0; c < seg.count; ++c) {
          acc += p[(r0 + r) * ldp + col + c] * seg.v[c * seg.ldv + x];
        }
        col += seg.count;
      }
      y[x] = t.out_scale ? acc * t.out_scale[r0 + r] : acc;
    }
  }
}

#endif

template <typename F>
void for_row_blocks(Index rows, F&& f) {
  for (Index r0 = 0; r0 < rows; r0 += kRowBlock) {
    switch (std::min<Index>(kRowBlock, rows - r0)) {
      case 6:
        f(r0, std::integral_constant<int, 6>{});
        break;
      case 5:
        f(r0, std::integral_constant<int, 5>{});
        break;
      case 4:
        f(r0, std::integral_constant<int, 4>{});
        break;
      case 3:
        f(r0, std::integral_constant<int, 3>{});
        break;
      case 2:
        f(r0, std::integral_constant<int, 2>{});
        break;
      default:
        f(r0, std::integral_constant<int, 1>{});
        break;
    }
  }
}

// exp(x - ref) in place and the sum of the results, for x <= ref (+ rounding). Arguments below
// -87 give exactly 0 (Eigen's vectorised exp returns about 3e-39 for -inf, which would give a
// fully masked row a nonzero sum). The sum runs in 8 fixed lanes and then a fixed tail, so it
// does not depend on the address of x.
float exp_shifted_sum(float* x, Index n, float ref) {
  Index i = 0;
  float total = 0.0f;
#ifdef ATTNBENCH_HIER_AVX2
  const __m256 vref = _mm256_set1_ps(ref);
  const __m256 lo = _mm256_set1_ps(-87.0f);
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
    const __m256 xc = _mm256_max_ps(v, lo);  // callers guarantee x <= ref: no upper clamp
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
  Index i = 0;
  float m = kNegInf;
#ifdef ATTNBENCH_HIER_AVX2
  if (n >= 8) {
    __m256 vm = _mm256_loadu_ps(x);
    for (i = 8; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, vm);
    for (float lane : lanes) m = std::max(m, lane);
  }
#endif
  for (; i < n; ++i) m = std::max(m, x[i]);  // max is exact in any order
  return m;
}

}  // namespace

void tile_scores(const float* q, Index ldq, Index rows, Index d, float scale,
                 std::span<const KeySegment> segments, float* s, Index lds) {
  // Chunk-major order keeps one chunk of keys (d x 16) in L1 while every row block passes over
  // it. Chunks run in column order, so each overwrites the slack its predecessor spilled into.
  Index col = 0;
  for (const KeySegment& seg : segments) {
    for (Index c0 = 0; c0 < seg.count; c0 += 16) {
      const float* bias = seg.bias ? seg.bias + c0 : nullptr;
      for_row_blocks(rows, [&](Index r0, auto rb) {
        score_block<decltype(rb)::value>(q + r0 * ldq, ldq, d, scale, seg.kt + c0, seg.ldkt, bias,
                                         s + r0 * lds + col + c0, lds);
      });
    }
    col += seg.count;
  }
}

void tile_softmax(float* s, Index lds, Index rows, Index cols, const float* m_in, float* m_out,
                  float* alpha, float* rowsum) {
  for (Index r = 0; r < rows; ++r) {
    float* row = s + r * lds;
    const float m_old = m_in ? m_in[r] : kNegInf;
    const float m_new = std::max(m_old, row_max(row, cols));
    const float ref = m_new == kNegInf ? 0.0f : m_new;  // every entry excluded so far
    rowsum[r] = exp_shifted_sum(row, cols, ref);
    alpha[r] = m_old - ref;  // <= 0; -inf when the row had no state yet
    m_out[r] = m_new;
  }
  exp_shifted_sum(alpha, rows, 0.0f);  // the rescaling factors, one vector pass for all rows
}

void tile_values(const float* p, Index ldp, Index rows, std::span<const KeySegment> segments,
                 Index d_v, const ValueTarget& target) {
#ifdef ATTNBENCH_HIER_AVX2
  // Column-chunk-major order keeps one chunk of values (keys x 16) in L1 across row blocks.
  for (Index x0 = 0; x0 < d_v; x0 += 16) {
    const Index width = std::min<Index>(16, d_v - x0);
    for_row_blocks(rows, [&](Index r0, auto rb) {
      if (width == 16) {
        value_block<decltype(rb)::value, true>(p, ldp, r0, segments, x0, width, target);
      } else {
        value_block<decltype(rb)::value, false>(p, ldp, r0, segments, x0, width, target);
      }
    });
  }
#else
  for_row_blocks(rows, [&](Index r0, auto rb) {
    value_rows<decltype(rb)::value>(p, ldp, r0, segments, d_v, target);
  });
#endif
}

void transpose_keys(const float* k, Index ldk, Index count, Index d, float* kt, Index ldkt) {
  Index c0 = 0;
#ifdef ATTNBENCH_HIER_AVX2
  // 8 x 8 register transposes: a scalar transpose writes one float per cache line touched.
  for (; c0 + 8 <= count; c0 += 8) {
    Index x0 = 0;
    for (; x0 + 8 <= d; x0 += 8) {
      __m256 r[8], t[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(k + (c0 + i) * ldk + x0);
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
        _mm256_storeu_ps(kt + (x0 + i) * ldkt + c0, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(kt + (x0 + i + 4) * ldkt + c0,
                         _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
      }
    }
    for (; x0 < d; ++x0) {
      for (Index i = 0; i < 8; ++i) kt[x0 * ldkt + c0 + i] = k[(c0 + i) * ldk + x0];
    }
  }
#endif
  for (; c0 < count; ++c0) {
    for (Index x = 0; x < d; ++x) kt[x * ldkt + c0] = k[c0 * ldk + x];
  }
}

void coarsen_keys(const float* in_lo, const float* in_hi, Index ld, Index half, Index tokens,
                  Index d, const float* wa, const float* wb, float* out) {
  for (int part = 0; part < 2; ++part) {
    const Index c_begin = part == 0 ? 0 : half;
    const Index c_end = part == 0 ? std::min(half, tokens) : tokens;
    for (Index x = 0; x < d; ++x) {
      // Token c's children are columns 2 (c - c_begin) and 2 (c - c_begin) + 1 of `row`.
      const float* src = (part == 0 ? in_lo : in_hi) + x * ld;
      float* o = out + x * ld;
      Index c = c_begin;
#ifdef ATTNBENCH_HIER_AVX2
      // Even and odd columns split apart by two in-lane shuffles and one cross-lane permute.
      for (; c + 8 <= c_end; c += 8) {
        const float* pair = src + 2 * (c - c_begin);
        const __m256 a = _mm256_loadu_ps(pair), b = _mm256_loadu_ps(pair + 8);
        const __m256 even = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), 0xD8));
        const __m256 odd = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), 0xD8));
        _mm256_storeu_ps(o + c, _mm256_fmadd_ps(_mm256_loadu_ps(wa + c), even,
                                                _mm256_mul_ps(_mm256_loadu_ps(wb + c), odd)));
      }
#endif
      for (; c < c_end; ++c) {
        const float* pair = src + 2 * (c - c_begin);
        o[c] = wa[c] * pair[0] + wb[c] * pair[1];
      }
    }
  }
}

}  // namespace attnbench::hierarchical
