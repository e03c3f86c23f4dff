// Thin SIMD backends for the flash tile kernel: one struct per instruction set with the same
// static interface (width, register-block geometry, load/store/broadcast/fma/max, exp), so one
// kernel template serves AVX-512, AVX2+FMA, an AVX2 emulation of the AVX-512 geometry (to test
// that geometry on machines without AVX-512) and a portable scalar fallback.
//
// exp (every backend, same algorithm and constants): n = round(x log2 e), r = x - n ln2 in two
// Cody-Waite steps, e^r by a degree-6 polynomial on [-ln2/2, ln2/2] (Chebyshev-node fit, relative
// error 2e-8 before rounding), then 2^n added into the exponent bits. Results are within a few
// ulp of exp(x) where exp(x) is a normal float; results below FLT_MIN (x < -87.3365) are flushed
// to +0 (absolute error < 1.2e-38: negligible beside a softmax row whose largest term is 1),
// exp(-inf) = 0, x > ln(FLT_MAX) gives +inf, NaN propagates.
//
// exp2_nonpos (the softmax kernel's exp: logits are pre-multiplied by log2 e, and x = s - max
// <= 0): n = round(x), r = x - n exactly, 2^r by a degree-6 polynomial on [-1/2, 1/2]. Only six
// FMAs and no Cody-Waite steps; same accuracy and special cases for x <= 0 (results below
// FLT_MIN, x < -126, flush to +0; -inf gives 0). Positive x are outside its contract.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ATTNBENCH_HAVE_AVX2 1
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#define ATTNBENCH_HAVE_AVX512 1
#endif

namespace attnbench::simd {

inline constexpr float kInf = std::numeric_limits<float>::infinity();
// Largest float whose exp is finite, and smallest float whose exp is a normal float (so that
// the exponent-bit construction below never produces a subnormal pattern).
inline constexpr float kExpHi = 88.72283172607421875f;
inline constexpr float kExpLo = -87.33654022216796875f;
inline constexpr float kLog2e = 1.44269504088896341f;
// ln 2 split so that n * kLn2Hi is exact for |n| <= 2^15 even without a fused multiply-add.
inline constexpr float kLn2Hi = 0.693359375f;
inline constexpr float kLn2Lo = -2.12194440e-4f;
// 1.5 * 2^23: adding it rounds to the nearest integer, which lands in the low mantissa bits.
inline constexpr float kRoundMagic = 12582912.0f;
inline constexpr float kExpC2 = 5.0e-1f;
inline constexpr float kExpC3 = 1.666641533e-1f;
inline constexpr float kExpC4 = 4.166635126e-2f;
inline constexpr float kExpC5 = 8.375125937e-3f;
inline constexpr float kExpC6 = 1.394110848e-3f;
// exp2_nonpos: 2^r on [-1/2, 1/2], degree 6 (relative error 1.9e-8 before rounding).
inline constexpr float kExp2Lo = -126.0f;  // 2^-126 = FLT_MIN
inline constexpr float kExp2C1 = 6.931471825e-1f;
inline constexpr float kExp2C2 = 2.402265072e-1f;
inline constexpr float kExp2C3 = 5.550327152e-2f;
inline constexpr float kExp2C4 = 9.618056938e-3f;
inline constexpr float kExp2C5 = 1.340042800e-3f;
inline constexpr float kExp2C6 = 1.546144485e-4f;

// Register-block geometry of the two GEMM micro-kernels (see attention/kernels/flash_tile.cpp):
//   scores  S^T (kScoreMr keys x kScoreNv vectors of queries) += K rows x packed Q^T
//   values  acc (kPvMr queries x kPvNv vectors of d_v)        += P x V rows
// Accumulators + operands must fit the register file without spills.

// Portable fallback: one float per "vector". Correct for every shape; no speed claims.
struct Scalar {
  using Reg = float;
  static constexpr int kWidth = 1;
  static constexpr int kScoreMr = 4, kScoreNv = 4, kPvMr = 4, kPvNv = 4;
  static constexpr const char* kName = "portable";

  static Reg zero() { return 0.0f; }
  static Reg set1(float x) { return x; }
  static Reg load(const float* p) { return *p; }
  static void store(float* p, Reg x) { *p = x; }
  static Reg broadcast(const float* p) { return *p; }
  static Reg fma(Reg a, Reg b, Reg c) { return a * b + c; }
  static Reg mul(Reg a, Reg b) { return a * b; }
  static Reg add(Reg a, Reg b) { return a + b; }
  static Reg sub(Reg a, Reg b) { return a - b; }
  // max(a, b) for non-NaN inputs; -inf loses to everything.
  static Reg max(Reg a, Reg b) { return a > b ? a : b; }

  static Reg exp(Reg x) {
    if (x != x) return x;
    if (x > kExpHi) return kInf;
    if (x < kExpLo) return 0.0f;
    const float k = x * kLog2e + kRoundMagic;
    const float n = k - kRoundMagic;
    float r = x - n * kLn2Hi;
    r = r - n * kLn2Lo;
    float p = kExpC6;
    p = p * r + kExpC5;
    p = p * r + kExpC4;
    p = p * r + kExpC3;
    p = p * r + kExpC2;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    std::uint32_t kb, pb;
    std::memcpy(&kb, &k, 4);
    std::memcpy(&pb, &p, 4);
    pb += kb << 23;  // n << 23 (the magic constant's bits shift out)
    std::memcpy(&p, &pb, 4);
    return p;
  }
  static Reg exp2_nonpos(Reg x) {
    if (!(x >= kExp2Lo)) return x != x ? x : 0.0f;
    const float k = x + kRoundMagic;
    const float n = k - kRoundMagic;
    const float r = x - n;
    float p = kExp2C6;
    p = p * r + kExp2C5;
    p = p * r + kExp2C4;
    p = p * r + kExp2C3;
    p = p * r + kExp2C2;
    p = p * r + kExp2C1;
    p = p * r + 1.0f;
    std::uint32_t kb, pb;
    std::memcpy(&kb, &k, 4);
    std::memcpy(&pb, &p, 4);
    pb += kb << 23;
    std::memcpy(&p, &pb, 4);
    return p;
  }
};

#ifdef ATTNBENCH_HAVE_AVX2
// AVX2 + FMA, 16 ymm registers: 6 x 2 accumulators + 2 operand vectors + 1 broadcast.
struct Avx2 {
  using Reg = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kScoreMr = 6, kScoreNv = 2, kPvMr = 6, kPvNv = 2;
  static constexpr const char* kName = "avx2";

  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(float x) { return _mm256_set1_ps(x); }
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Reg x) { _mm256_storeu_ps(p, x); }
  static Reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }

  static Reg exp(Reg x) {
    // min/max return their second operand when either is NaN: this order keeps a NaN x.
    const Reg xc = _mm256_max_ps(_mm256_set1_ps(kExpLo), _mm256_min_ps(_mm256_set1_ps(kExpHi), x));
    const Reg k = _mm256_fmadd_ps(xc, _mm256_set1_ps(kLog2e), _mm256_set1_ps(kRoundMagic));
    const Reg n = _mm256_sub_ps(k, _mm256_set1_ps(kRoundMagic));
    Reg r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
    Reg p = _mm256_set1_ps(kExpC6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpC2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(k), 23);
    Reg y = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
    y = _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(kExpLo), _CMP_LT_OQ), y);
    return _mm256_blendv_ps(y, _mm256_set1_ps(kInf),
                            _mm256_cmp_ps(x, _mm256_set1_ps(kExpHi), _CMP_GT_OQ));
  }

  // Lanes below kExp2Lo compute garbage (NaN from -inf) that the final mask replaces by +0.
  static Reg exp2_nonpos(Reg x) {
    const Reg k = _mm256_add_ps(x, _mm256_set1_ps(kRoundMagic));
    const Reg r = _mm256_sub_ps(x, _mm256_sub_ps(k, _mm256_set1_ps(kRoundMagic)));
    Reg p = _mm256_set1_ps(kExp2C6);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExp2C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExp2C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExp2C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExp2C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExp2C1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(k), 23);
    const Reg y = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
    return _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(kExp2Lo), _CMP_LT_OQ), y);
  }
};

// The AVX-512 register geometry (16 lanes, same block shape) emulated with pairs of AVX2
// registers. Slower than Avx2; it exists so the 16-lane paths (padding to 16, 32-wide panels)
// are tested on machines without AVX-512.
struct Avx2Pair {
  struct Reg {
    __m256 lo, hi;
  };
  static constexpr int kWidth = 16;
  static constexpr int kScoreMr = 8, kScoreNv = 2, kPvMr = 8, kPvNv = 2;
  static constexpr const char* kName = "avx2x2";

  static Reg zero() { return {Avx2::zero(), Avx2::zero()}; }
  static Reg set1(float x) { return {Avx2::set1(x), Avx2::set1(x)}; }
  static Reg load(const float* p) { return {Avx2::load(p), Avx2::load(p + 8)}; }
  static void store(float* p, Reg x) {
    Avx2::store(p, x.lo);
    Avx2::store(p + 8, x.hi);
  }
  static Reg broadcast(const float* p) {
    const __m256 b = Avx2::broadcast(p);
    return {b, b};
  }
  static Reg fma(Reg a, Reg b, Reg c) {
    return {Avx2::fma(a.lo, b.lo, c.lo), Avx2::fma(a.hi, b.hi, c.hi)};
  }
  static Reg mul(Reg a, Reg b) { return {Avx2::mul(a.lo, b.lo), Avx2::mul(a.hi, b.hi)}; }
  static Reg add(Reg a, Reg b) { return {Avx2::add(a.lo, b.lo), Avx2::add(a.hi, b.hi)}; }
  static Reg sub(Reg a, Reg b) { return {Avx2::sub(a.lo, b.lo), Avx2::sub(a.hi, b.hi)}; }
  static Reg max(Reg a, Reg b) { return {Avx2::max(a.lo, b.lo), Avx2::max(a.hi, b.hi)}; }
  static Reg exp(Reg x) { return {Avx2::exp(x.lo), Avx2::exp(x.hi)}; }
  static Reg exp2_nonpos(Reg x) { return {Avx2::exp2_nonpos(x.lo), Avx2::exp2_nonpos(x.hi)}; }
};
#endif  // ATTNBENCH_HAVE_AVX2

#ifdef ATTNBENCH_HAVE_AVX512
// AVX-512F, 32 zmm registers: 8 x 2 accumulators. With two FMA ports of latency 4, 16
// independent accumulators keep both busy; per k step 2 vector loads + 8 broadcasts against 16
// FMAs stay under the two load ports' rate.
struct Avx512 {
  using Reg = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kScoreMr = 8, kScoreNv = 2, kPvMr = 8, kPvNv = 2;
  static constexpr const char* kName = "avx512";

  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(float x) { return _mm512_set1_ps(x); }
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Reg x) { _mm512_storeu_ps(p, x); }
  static Reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }

  static Reg exp(Reg x) {
    const Reg xc = _mm512_max_ps(_mm512_set1_ps(kExpLo), _mm512_min_ps(_mm512_set1_ps(kExpHi), x));
    const Reg k = _mm512_fmadd_ps(xc, _mm512_set1_ps(kLog2e), _mm512_set1_ps(kRoundMagic));
    const Reg n = _mm512_sub_ps(k, _mm512_set1_ps(kRoundMagic));
    Reg r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
    Reg p = _mm512_set1_ps(kExpC6);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpC2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_castps_si512(k), 23);
    Reg y = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
    // Zero lanes with x < kExpLo (including -inf); NaN compares false and is kept.
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpLo), _CMP_LT_OQ);
    y = _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), y);
    const __mmask16 huge = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpHi), _CMP_GT_OQ);
    return _mm512_mask_mov_ps(y, huge, _mm512_set1_ps(kInf));
  }

  static Reg exp2_nonpos(Reg x) {
    const Reg k = _mm512_add_ps(x, _mm512_set1_ps(kRoundMagic));
    const Reg r = _mm512_sub_ps(x, _mm512_sub_ps(k, _mm512_set1_ps(kRoundMagic)));
    Reg p = _mm512_set1_ps(kExp2C6);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExp2C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExp2C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExp2C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExp2C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExp2C1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_castps_si512(k), 23);
    const Reg y = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e));
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExp2Lo), _CMP_LT_OQ);
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), y);
  }
};
#endif  // ATTNBENCH_HAVE_AVX512

}  // namespace attnbench::simd
