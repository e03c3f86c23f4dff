// Small dense kernels of the LSH chunk attention: a register-blocked GEMM for the chunk-sized
// products and a vectorised exp. Chunk products are tiny (64 x 64 x 128 by default), where a
// general GEMM spends much of its time packing, and the library exp is scalar.
//
// gemm(): C (m, n) (+)= A (m, k) B (k, n), all row-major with leading dimensions; n must be a
// multiple of 16 (callers pad). A is read as A[i lda + p], or as A[p lda + i] when trans_a
// (C = A^T B with A stored (k, m)). Each element of C is a sum over p in increasing order, so
// results do not depend on the blocking, the thread or the alignment.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ATTNBENCH_LSH_AVX2 1
#endif

#include "attention/tensor.h"

namespace attnbench::lsh::kernels {

inline constexpr Index kNr = 16;  // columns per micro-tile: two 8-float AVX registers

inline Index round_up(Index x, Index m) { return (x + m - 1) / m * m; }

#ifdef ATTNBENCH_LSH_AVX2

// MR rows x 16 columns: 2 MR accumulators, 2 loads of B and MR broadcasts of A per step of p,
// so the FMA ports, not the loads, bound it (MR <= 6 keeps 12 accumulators + 3 in registers).
template <int MR, bool kTransA, bool kAcc>
inline void micro_tile(Index k, const float* a, Index lda, const float* b, Index ldb, float* c,
                       Index ldc) {
  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    acc0[r] = kAcc ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
    acc1[r] = kAcc ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (Index p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b + p * ldb);
    const __m256 b1 = _mm256_loadu_ps(b + p * ldb + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(kTransA ? a + p * lda + r : a + r * lda + p);
      acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(c + r * ldc, acc0[r]);
    _mm256_storeu_ps(c + r * ldc + 8, acc1[r]);
  }
}

template <bool kTransA, bool kAcc>
inline void gemm_impl(Index m, Index n, Index k, const float* a, Index lda, const float* b,
                      Index ldb, float* c, Index ldc) {
  auto a_at = [&](Index i) { return kTransA ? a + i : a + i * lda; };
  for (Index j0 = 0; j0 < n; j0 += kNr) {
    const float* bj = b + j0;
    Index i0 = 0;
    for (; i0 + 6 <= m; i0 += 6) {
      micro_tile<6, kTransA, kAcc>(k, a_at(i0), lda, bj, ldb, c + i0 * ldc + j0, ldc);
    }
    float* ci = c + i0 * ldc + j0;
    switch (m - i0) {
      case 5:
        micro_tile<5, kTransA, kAcc>(k, a_at(i0), lda, bj, ldb, ci, ldc);
        break;
      case 4:
        micro_tile<4, kTransA, kAcc>(k, a_at(i0), lda, bj, ldb, ci, ldc);
        break;
      case 3:
        micro_tile<3, kTransA, kAcc>(k, a_at(i0), lda, bj, ldb, ci, ldc);
        break;
      case 2:
        micro_tile<2, kTransA, kAcc>(k, a_at(i0), lda, bj, ldb, ci, ldc);
        break;
      case 1:
        micro_tile<1, kTransA, kAcc>(k, a_at(i0), lda, bj, ldb, ci, ldc);
        break;
      default:
        break;
    }
  }
}

#else

template <bool kTransA, bool kAcc>
inline void gemm_impl(Index m, Index n, Index k, const float* a, Index lda, const float* b,
                      Index ldb, float* c, Index ldc) {
  for (Index i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    if (!kAcc) {
      for (Index j = 0; j < n; ++j) ci[j] = 0.0f;
    }
    for (Index p = 0; p < k; ++p) {
      const float av = kTransA ? a[p * lda + i] : a[i * lda + p];
      const float* bp = b + p * ldb;
      for (Index j = 0; j < n; ++j) ci[j] += av * bp[j];
    }
  }
}

#endif

// C = A B, or C += A B when accumulate.
inline void gemm(Index m, Index n, Index k, const float* a, Index lda, bool trans_a, const float* b,
                 Index ldb, float* c, Index ldc, bool accumulate = false) {
  if (trans_a) {
    if (accumulate) {
      gemm_impl<true, true>(m, n, k, a, lda, b, ldb, c, ldc);
    } else {
      gemm_impl<true, false>(m, n, k, a, lda, b, ldb, c, ldc);
    }
  } else {
    if (accumulate) {
      gemm_impl<false, true>(m, n, k, a, lda, b, ldb, c, ldc);
    } else {
      gemm_impl<false, false>(m, n, k, a, lda, b, ldb, c, ldc);
    }
  }
}

// exp(x) for x <= 0 (shifted logits), Cephes' single-precision polynomial (about 1 ulp);
// x below -87.3 (including -inf, i.e. excluded keys) gives exactly 0.
inline float exp_nonpositive(float x) {
  const bool under = !(x >= -87.33654f);
  x = under ? 0.0f : x;
  const float fx = std::floor(x * 1.44269504088896341f + 0.5f);
  x = x - fx * 0.693359375f;
  x = x + fx * 2.12194440e-4f;
  const float z = x * x;
  float y = 1.9875691500e-4f;
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(fx) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return under ? 0.0f : y * scale;
}

#ifdef ATTNBENCH_LSH_AVX2
inline __m256 exp_nonpositive(__m256 x) {
  const __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_NGE_UQ);
  x = _mm256_andnot_ps(under, x);
  const __m256 fx = _mm256_floor_ps(
      _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fmadd_ps(fx, _mm256_set1_ps(2.12194440e-4f), x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, z, _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(bits)));
}
#endif

// p[i] = exp(s[i] - ref[i]) * mult[i] (mult may be null), l[i] += p[i], for i < n (n % 8 == 0
// on the AVX2 path; callers pad to 16).
inline void exp_accumulate(float* s, const float* ref, const float* mult, float* l, Index n) {
#ifdef ATTNBENCH_LSH_AVX2
  for (Index i = 0; i < n; i += 8) {
    __m256 p = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(s + i), _mm256_loadu_ps(ref + i)));
    if (mult) p = _mm256_mul_ps(p, _mm256_loadu_ps(mult + i));
    _mm256_storeu_ps(s + i, p);
    _mm256_storeu_ps(l + i, _mm256_add_ps(_mm256_loadu_ps(l + i), p));
  }
#else
  for (Index i = 0; i < n; ++i) {
    float p = exp_nonpositive(s[i] - ref[i]);
    if (mult) p *= mult[i];
    s[i] = p;
    l[i] += p;
  }
#endif
}

// One key's scores against the chunk's queries (n % 8 == 0 on the AVX2 path): row = kscale *
// row, or -inf where excluded (causal: key after query; self: key is the query), and the
// running per-query maximum m = max(m, row).
template <bool kCausal, bool kSelf>
inline void mask_scale_max(float* row, std::int32_t kp, float kscale, const std::int32_t* qpos,
                           float* m, Index n) {
#ifdef ATTNBENCH_LSH_AVX2
  const __m256i kv = _mm256_set1_epi32(kp);
  const __m256 ks = _mm256_set1_ps(kscale);
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (Index i = 0; i < n; i += 8) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qpos + i));
    __m256i ex = _mm256_setzero_si256();
    if (kCausal) ex = _mm256_or_si256(ex, _mm256_cmpgt_epi32(kv, q));
    if (kSelf) ex = _mm256_or_si256(ex, _mm256_cmpeq_epi32(kv, q));
    __m256 s = _mm256_mul_ps(_mm256_loadu_ps(row + i), ks);
    s = _mm256_blendv_ps(s, ninf, _mm256_castsi256_ps(ex));
    _mm256_storeu_ps(row + i, s);
    _mm256_storeu_ps(m + i, _mm256_max_ps(_mm256_loadu_ps(m + i), s));
  }
#else
  for (Index i = 0; i < n; ++i) {
    const bool ex = (kCausal && kp > qpos[i]) || (kSelf && kp == qpos[i]);
    row[i] = ex ? -std::numeric_limits<float>::infinity() : kscale * row[i];
    m[i] = std::max(m[i], row[i]);
  }
#endif
}

// The duplicate-count factors of one key against n queries: mult[i] = 1 / (base + #{rounds
// r != skip : (kcid[r] - qstart[r ldq + i]) mod wrap < span}), where qstart is the query's chunk
// minus chunks_before (mod wrap) and span = before + after + 1 < wrap: the count rule of
// lsh::counted() summed over rounds (n % 8 == 0 on the AVX2 path; kcid, qstart in [0, wrap)).
inline void count_multipliers(const std::int32_t* kcid, const std::int32_t* qstart, Index ldq,
                              Index rounds, Index skip, std::int32_t wrap, std::int32_t span,
                              float base, float* mult, Index n) {
#ifdef ATTNBENCH_LSH_AVX2
  constexpr Index kMaxRounds = 64;
  __m256i kv[kMaxRounds];
  const std::int32_t* qs[kMaxRounds];
  Index used = 0;
  for (Index r = 0; r < rounds && used < kMaxRounds; ++r) {
    if (r == skip) continue;
    kv[used] = _mm256_set1_epi32(kcid[r]);
    qs[used++] = qstart + r * ldq;
  }
  const __m256i wv = _mm256_set1_epi32(wrap), sv = _mm256_set1_epi32(span);
  const __m256i zero = _mm256_setzero_si256();
  // 1 / (count + base) for count 0..7 by a register lookup when the count cannot exceed 7.
  alignas(32) float table[8];
  for (int c = 0; c < 8; ++c) table[c] = 1.0f / (static_cast<float>(c) + base);
  const __m256 tv = _mm256_load_ps(table);
  const bool lookup = used < 8;
  const __m256 one = _mm256_set1_ps(1.0f), bv = _mm256_set1_ps(base);
  for (Index i = 0; i < n; i += 8) {
    __m256i acc = zero;
    for (Index u = 0; u < used; ++u) {
      __m256i x =
          _mm256_sub_epi32(kv[u], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs[u] + i)));
      x = _mm256_add_epi32(x, _mm256_and_si256(_mm256_cmpgt_epi32(zero, x), wv));
      acc = _mm256_sub_epi32(acc, _mm256_cmpgt_epi32(sv, x));  // visible: -(-1)
    }
    const __m256 m = lookup ? _mm256_permutevar8x32_ps(tv, acc)
                            : _mm256_div_ps(one, _mm256_add_ps(_mm256_cvtepi32_ps(acc), bv));
    _mm256_storeu_ps(mult + i, m);
  }
#else
  for (Index i = 0; i < n; ++i) {
    std::int32_t count = 0;
    for (Index r = 0; r < rounds; ++r) {
      if (r == skip) continue;
      std::int32_t x = kcid[r] - qstart[r * ldq + i];
      x += x < 0 ? wrap : 0;
      count += x < span;
    }
    mult[i] = 1.0f / (static_cast<float>(count) + base);
  }
#endif
}

// First index k < m with u[k] == value (m if none, e.g. a NaN value).
inline Index first_equal(const float* u, Index m, float value) {
  Index k = 0;
#ifdef ATTNBENCH_LSH_AVX2
  const __m256 vv = _mm256_set1_ps(value);
  for (; k + 8 <= m; k += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(u + k), vv, _CMP_EQ_OQ));
    if (hit) return k + __builtin_ctz(static_cast<unsigned>(hit));
  }
#endif
  for (; k < m; ++k) {
    if (u[k] == value) return k;
  }
  return m;
}

// dst (cols, ld) <- scale * rows (8 row pointers, each cols long) transposed: dst[p ld + u] =
// scale rows[u][p], for u < 8.
inline void transpose8_scaled(const float* const* rows, Index cols, float scale, float* dst,
                              Index ld) {
  Index p = 0;
#ifdef ATTNBENCH_LSH_AVX2
  const __m256 sc = _mm256_set1_ps(scale);
  for (; p + 8 <= cols; p += 8) {
    __m256 r[8];
    for (int u = 0; u < 8; ++u) r[u] = _mm256_mul_ps(_mm256_loadu_ps(rows[u] + p), sc);
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    float* o = dst + p * ld;
    _mm256_storeu_ps(o + 0 * ld, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(o + 1 * ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(o + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(o + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(o + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(o + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(o + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(o + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
  }
#endif
  for (; p < cols; ++p) {
    for (int u = 0; u < 8; ++u) dst[p * ld + u] = scale * rows[u][p];
  }
}

}  // namespace attnbench::lsh::kernels
