// The fused flash tile kernel (FlashTile) and its exp, against plain double references, on every
// instruction set compiled in: AVX-512 (on such machines), AVX2, the 16-lane AVX-512 geometry
// emulated on AVX2, and the portable fallback. Awkward head dims and tile edges, masks, strides.
#include <gtest/gtest.h>
#include <tbb/parallel_for.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "attention/kernels/simd.h"
#include "attention/online_softmax.h"
#include "tests/testing/test_util.h"

namespace attnbench {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kEps = std::numeric_limits<float>::epsilon();

std::vector<KernelIsa> available_isas() {
  std::vector<KernelIsa> out;
  for (KernelIsa isa :
       {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx2Pair, KernelIsa::kAvx512}) {
    if (kernel_isa_available(isa)) out.push_back(isa);
  }
  return out;
}

// ---- exp ---------------------------------------------------------------------------------------

// Distance in units in the last place between two finite floats of the same sign.
std::int64_t ulp_distance(float a, float b) {
  std::int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(std::int64_t(ia) - std::int64_t(ib));
}

template <class V>
struct ExpOps {
  // y[i] = exp(x[i]) (or 2^x[i] with exp2_nonpos), W lanes at a time.
  static std::vector<float> apply(std::vector<float> x, bool base2) {
    const std::size_t n = x.size();
    x.resize((n + V::kWidth - 1) / V::kWidth * V::kWidth, 0.0f);
    std::vector<float> y(x.size());
    for (std::size_t i = 0; i < x.size(); i += V::kWidth) {
      const typename V::Reg r = V::load(x.data() + i);
      V::store(y.data() + i, base2 ? V::exp2_nonpos(r) : V::exp(r));
    }
    y.resize(n);
    return y;
  }
};

template <class V>
class SimdExp : public ::testing::Test {};

using Backends = ::testing::Types<simd::Scalar
#ifdef ATTNBENCH_HAVE_AVX2
                                  ,
                                  simd::Avx2, simd::Avx2Pair
#endif
#ifdef ATTNBENCH_HAVE_AVX512
                                  ,
                                  simd::Avx512
#endif
                                  >;
TYPED_TEST_SUITE(SimdExp, Backends);

// A dense sweep of [lo, hi], negative values of every magnitude (tiny to -FLT_MAX), and the
// special values that break naive implementations; all within [lo, hi].
std::vector<float> exp_inputs(float lo, float hi) {
  std::vector<float> x;
  const int n = 400000;
  for (int i = 0; i <= n; ++i) x.push_back(lo + (hi - lo) * float(i) / float(n));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(lo, hi), frac(1.0f, 2.0f);
  for (int i = 0; i < 100000; ++i) x.push_back(u(rng));
  for (int e = -140; e <= 127; ++e) {
    for (int i = 0; i < 50; ++i) {
      const float m = std::ldexp(frac(rng), e - 1);
      if (std::isfinite(m) && -m >= lo) x.push_back(-m);
    }
  }
  const float specials[] = {0.0f,
                            -0.0f,
                            std::numeric_limits<float>::denorm_min(),
                            -std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::min(),
                            -std::numeric_limits<float>::min(),
                            1e-30f,
                            -1e-30f,
                            1e-7f,
                            -1e-7f,
                            0.5f,
                            -0.5f,
                            0.34657359f,
                            -0.34657359f,
                            1.0f,
                            -1.0f,
                            -20.0f,
                            -87.0f,
                            -87.336f,
                            simd::kExpLo,
                            std::nextafter(simd::kExpLo, -kInf),
                            -87.5f,
                            -88.0f,
                            -100.0f,
                            -103.97f,
                            -104.0f,
                            -125.9f,
                            -126.0f,
                            std::nextafter(-126.0f, -kInf),
                            -126.5f,
                            -149.0f,
                            -200.0f,
                            -1e4f,
                            -1e30f,
                            -std::numeric_limits<float>::max(),
                            -kInf};
  for (float s : specials) {
    if (s >= lo && s <= hi) x.push_back(s);
  }
  return x;
}

TYPED_TEST(SimdExp, ExpMatchesStdExpToAFewUlp) {
  std::vector<float> x = exp_inputs(-110.0f, 100.0f);
  for (float s : {88.0f, 88.7f, simd::kExpHi, std::nextafter(simd::kExpHi, kInf), 88.8f, 89.0f,
                  1000.0f, std::numeric_limits<float>::max(), kInf}) {
    x.push_back(s);
  }
  const std::vector<float> y = ExpOps<TypeParam>::apply(x, false);
  std::int64_t worst = 0;
  float worst_x = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double e = std::exp(double(x[i]));
    if (e < double(std::numeric_limits<float>::min())) {
      // Subnormal results flush to +0 (including exp(-inf)).
      ASSERT_EQ(y[i], 0.0f) << "x = " << x[i];
      ASSERT_FALSE(std::signbit(y[i])) << "x = " << x[i];
    } else if (e > double(std::numeric_limits<float>::max())) {
      ASSERT_EQ(y[i], kInf) << "x = " << x[i];
    } else {
      ASSERT_TRUE(std::isfinite(y[i])) << "x = " << x[i];
      const std::int64_t u = ulp_distance(y[i], float(e));
      if (u > worst) worst = u, worst_x = x[i];
    }
  }
  EXPECT_LE(worst, 2) << "worst at x = " << worst_x;
  // Exact where it matters for a softmax: exp(0) = 1 (the row max), exp(-inf) = 0 (masked).
  const std::vector<float> z = ExpOps<TypeParam>::apply({0.0f, -0.0f, -kInf, kInf}, false);
  EXPECT_EQ(z[0], 1.0f);
  EXPECT_EQ(z[1], 1.0f);
  EXPECT_EQ(z[2], 0.0f);
  EXPECT_EQ(z[3], kInf);
  const std::vector<float> w =
      ExpOps<TypeParam>::apply({std::numeric_limits<float>::quiet_NaN()}, false);
  EXPECT_TRUE(std::isnan(w[0]));
}

TYPED_TEST(SimdExp, Exp2NonPositiveMatchesStdExp2ToAFewUlp) {
  std::vector<float> x = exp_inputs(-140.0f, 0.0f);
  const std::vector<float> y = ExpOps<TypeParam>::apply(x, true);
  std::int64_t worst = 0;
  float worst_x = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double e = std::exp2(double(x[i]));
    if (e < double(std::numeric_limits<float>::min())) {
      ASSERT_EQ(y[i], 0.0f) << "x = " << x[i];
      ASSERT_FALSE(std::signbit(y[i])) << "x = " << x[i];
    } else {
      ASSERT_TRUE(std::isfinite(y[i])) << "x = " << x[i];
      const std::int64_t u = ulp_distance(y[i], float(e));
      if (u > worst) worst = u, worst_x = x[i];
    }
  }
  EXPECT_LE(worst, 2) << "worst at x = " << worst_x;
  const std::vector<float> z = ExpOps<TypeParam>::apply(
      {0.0f, -0.0f, -kInf, -126.0f, -1.0f, std::numeric_limits<float>::quiet_NaN()}, true);
  EXPECT_EQ(z[0], 1.0f);
  EXPECT_EQ(z[1], 1.0f);
  EXPECT_EQ(z[2], 0.0f);
  EXPECT_EQ(z[3], std::numeric_limits<float>::min());
  EXPECT_EQ(z[4], 0.5f);
  EXPECT_TRUE(std::isnan(z[5]));
}

// ---- FlashTile against a double reference ------------------------------------------------------

// One key tile of a test case and the mask it is folded in with.
struct KeyTile {
  Index bc;
  TileMask mask;
  std::vector<std::uint8_t> valid;  // backing store for mask.key_valid
};

bool checkerboard(const void* ctx, Index r, Index c) {
  return (r + c + *static_cast<const Index*>(ctx)) % 3 != 0;
}

bool allowed(const TileMask& m, Index r, Index c) {
  if (c - r < m.diag_min || c - r > m.diag_max) return false;
  if (m.key_valid && !m.key_valid[c]) return false;
  if (m.allowed && !m.allowed(m.ctx, r, c)) return false;
  return true;
}

struct CaseResult {
  double err_ratio = 0, lse_err_ratio = 0;  // worst |error| / tolerance over the rows
  bool finite = true;
  bool masked_rows_zero = true;
};

// Runs query rows [0, br) against `tiles` (consecutive key ranges) with strided inputs and
// compares with the double-precision softmax over the allowed pairs.
CaseResult run_case(KernelIsa isa, Index max_br, Index max_bc, Index br, Index d, Index d_v,
                    std::vector<KeyTile>& tiles, float scale, std::uint64_t seed,
                    double q_stddev = 1.0) {
  const Index ldq = d + 3, ldk = d + 5, ldv = d_v + 2, ld_out = d_v + 1;
  Index n_k = 0;
  for (const KeyTile& t : tiles) n_k += t.bc;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> q(br * ldq), k(n_k * ldk), v(n_k * ldv);
  for (float& x : q) x = float(q_stddev) * nd(rng);
  for (float& x : k) x = nd(rng);
  for (float& x : v) x = nd(rng);

  FlashTile ft(max_br, max_bc, d, d_v, isa);
  std::vector<float> out(br * ld_out, std::numeric_limits<float>::quiet_NaN()), lse(br);
  ft.begin(q.data(), ldq, br, scale);
  Index j0 = 0;
  for (KeyTile& t : tiles) {
    if (!t.valid.empty()) t.mask.key_valid = t.valid.data();
    ft.add_keys(k.data() + j0 * ldk, ldk, v.data() + j0 * ldv, ldv, t.bc, t.mask);
    j0 += t.bc;
  }
  ft.finish(out.data(), ld_out, lse.data());

  CaseResult res;
  double max_v = 0;
  for (float x : v) max_v = std::max(max_v, double(std::abs(x)));
  for (Index r = 0; r < br; ++r) {
    std::vector<double> logits;
    std::vector<Index> keys;
    double max_logit = -std::numeric_limits<double>::infinity(), max_abs_logit = 0;
    Index base = 0;
    for (const KeyTile& t : tiles) {
      for (Index c = 0; c < t.bc; ++c) {
        if (!allowed(t.mask, r, c)) continue;
        double s = 0;
        for (Index i = 0; i < d; ++i) s += double(q[r * ldq + i]) * double(k[(base + c) * ldk + i]);
        s *= scale;
        logits.push_back(s);
        keys.push_back(base + c);
        max_logit = std::max(max_logit, s);
        max_abs_logit = std::max(max_abs_logit, std::abs(s));
      }
      base += t.bc;
    }
    const float* o = out.data() + r * ld_out;
    if (logits.empty()) {
      for (Index c = 0; c < d_v; ++c) res.masked_rows_zero &= o[c] == 0.0f;
      res.masked_rows_zero &= lse[r] == -kInf;
      continue;
    }
    double l = 0;
    std::vector<double> ref(d_v, 0.0);
    for (std::size_t i = 0; i < logits.size(); ++i) {
      const double p = std::exp(logits[i] - max_logit);
      l += p;
      for (Index c = 0; c < d_v; ++c) ref[c] += p * double(v[keys[i] * ldv + c]);
    }
    // Rounding of the logits (eps sqrt(d) |logit|, amplified through exp), of the sums
    // (eps log2 n) and of the polynomial exp (a few eps), times max |V|, with a safety factor.
    const double tol =
        8.0 * kEps * (std::sqrt(double(d)) * max_abs_logit + std::log2(double(n_k)) + 8.0) * max_v;
    for (Index c = 0; c < d_v; ++c) {
      res.finite &= std::isfinite(o[c]);
      res.err_ratio = std::max(res.err_ratio, std::abs(double(o[c]) - ref[c] / l) / tol);
    }
    const double lse_ref = max_logit + std::log(l);
    const double lse_tol =
        8.0 * kEps *
        (std::sqrt(double(d)) * max_abs_logit + std::abs(lse_ref) + std::log2(double(n_k)) + 8.0);
    res.finite &= std::isfinite(lse[r]);
    res.lse_err_ratio = std::max(res.lse_err_ratio, std::abs(double(lse[r]) - lse_ref) / lse_tol);
  }
  return res;
}

void expect_case(KernelIsa isa, Index max_br, Index max_bc, Index br, Index d, Index d_v,
                 std::vector<KeyTile> tiles, std::uint64_t seed, double q_stddev = 1.0) {
  const float scale = float(1.0 / std::sqrt(double(d)));
  const CaseResult r = run_case(isa, max_br, max_bc, br, d, d_v, tiles, scale, seed, q_stddev);
  const std::string what = std::string(to_string(isa)) + " br=" + std::to_string(br) +
                           " d=" + std::to_string(d) + " d_v=" + std::to_string(d_v) +
                           " tiles=" + std::to_string(tiles.size()) +
                           " seed=" + std::to_string(seed);
  EXPECT_TRUE(r.finite) << what;
  EXPECT_TRUE(r.masked_rows_zero) << what;
  EXPECT_LE(r.err_ratio, 1.0) << what;
  EXPECT_LE(r.lse_err_ratio, 1.0) << what;
}

KeyTile plain(Index bc) { return KeyTile{bc, TileMask(), {}}; }

class FlashTileTest : public ::testing::TestWithParam<KernelIsa> {};

INSTANTIATE_TEST_SUITE_P(Isa, FlashTileTest, ::testing::ValuesIn(available_isas()),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST_P(FlashTileTest, AwkwardHeadDimsAndTileEdges) {
  // (d, d_v) including 1, primes, d_v != d, and widths that are not a multiple of any vector.
  const std::pair<Index, Index> dims[] = {{1, 1},   {1, 13},  {13, 1},  {13, 7},   {7, 33},
                                          {64, 64}, {64, 13}, {16, 17}, {128, 100}};
  std::uint64_t seed = 1;
  for (auto [d, d_v] : dims) {
    // Tiles of 1, a prime, a multiple of 6 and 8, a full tile, and one past a vector.
    for (Index br : {Index(1), Index(5), Index(17), Index(37)}) {
      expect_case(GetParam(), 37, 40, br, d, d_v, {plain(13), plain(1), plain(40), plain(7)},
                  seed++);
    }
    expect_case(GetParam(), 100, 96, 100, d, d_v, {plain(96), plain(33), plain(96)}, seed++);
  }
}

TEST_P(FlashTileTest, BandMasksCausalAndWindow) {
  for (Index d : {Index(8), Index(64)}) {
    for (Index br : {Index(1), Index(7), Index(48), Index(70)}) {
      for (Index dmax : {Index(-80), Index(-9), Index(-1), Index(0), Index(3), Index(50)}) {
        // Causal diagonal: c - r <= dmax; a tile wholly above it; a tile of its own.
        std::vector<KeyTile> tiles = {plain(32), plain(45)};
        tiles[1].mask.diag_max = dmax;
        expect_case(GetParam(), 70, 64, br, d, d + 3, tiles, 100 + std::uint64_t(br + dmax));
        // Window: dmin <= c - r <= dmax.
        tiles[1].mask.diag_min = dmax - 20;
        expect_case(GetParam(), 70, 64, br, d, d + 3, tiles, 200 + std::uint64_t(br + dmax));
      }
    }
  }
}

TEST_P(FlashTileTest, KeyValidityElementMaskAndFullyMaskedRows) {
  std::mt19937 rng(3);
  for (Index br : {Index(1), Index(9), Index(33)}) {
    std::vector<KeyTile> tiles = {plain(29), plain(64), plain(17), plain(40)};
    // Scattered padding in tile 0, a tile with every key invalid, a checkerboard predicate.
    tiles[0].valid.resize(29);
    for (auto& x : tiles[0].valid) x = rng() % 3 != 0;
    tiles[1].valid.assign(64, 0);
    static const Index offset = 1;
    tiles[2].mask.allowed = checkerboard;
    tiles[2].mask.ctx = &offset;
    tiles[3].mask.diag_max = -1000;  // nothing allowed in this tile
    expect_case(GetParam(), 40, 64, br, 24, 19, tiles, 300 + std::uint64_t(br));
  }
  // Every row fully masked: zeros and lse = -inf, never NaN.
  std::vector<KeyTile> none = {plain(10), plain(20)};
  none[0].mask.diag_max = -100;
  none[1].valid.assign(20, 0);
  expect_case(GetParam(), 16, 20, 16, 8, 8, none, 400);
  // Rows 0..4 see nothing (band), later rows see some keys.
  std::vector<KeyTile> some = {plain(12)};
  some[0].mask.diag_max = -5;
  expect_case(GetParam(), 16, 12, 16, 8, 5, some, 401);
}

TEST_P(FlashTileTest, HugeLogitsStayFinite) {
  // Logits of magnitude ~1e4: the softmax is one-hot; no overflow, no NaN.
  for (Index d : {Index(4), Index(64)}) {
    expect_case(GetParam(), 20, 30, 20, d, 9, {plain(30), plain(11)}, 500 + std::uint64_t(d), 1e4);
  }
}

TEST_P(FlashTileTest, WorkspaceIsReusedAcrossQueryTiles) {
  // State from one query tile must not leak into the next (m, l, acc, colmax, padding).
  const Index d = 16, d_v = 12, n = 50;
  std::mt19937_64 rng(9);
  std::normal_distribution<float> nd;
  std::vector<float> q(n * d), k(n * d), v(n * d_v), a(n * d_v), b(n * d_v);
  for (auto* x : {&q, &k, &v}) {
    for (float& e : *x) e = nd(rng);
  }
  FlashTile ft(32, 32, d, d_v, GetParam());
  auto run_rows = [&](Index i0, Index br, float* out) {
    ft.begin(q.data() + i0 * d, d, br, 0.3f);
    for (Index j0 = 0; j0 < n; j0 += 32) {
      ft.add_keys(k.data() + j0 * d, d, v.data() + j0 * d_v, d_v, std::min<Index>(32, n - j0));
    }
    ft.finish(out + i0 * d_v, d_v);
  };
  run_rows(0, 32, a.data());
  run_rows(32, 18, a.data());
  FlashTile fresh(32, 32, d, d_v, GetParam());
  std::swap(ft, fresh);
  run_rows(32, 18, b.data());
  for (Index i = 32 * d_v; i < n * d_v; ++i) EXPECT_EQ(a[i], b[i]) << i;
}

TEST(FlashTile, RejectsBadSizesAndUnavailableIsa) {
  EXPECT_THROW(FlashTile(0, 8, 8, 8), std::invalid_argument);
  EXPECT_THROW(FlashTile(8, 8, 8, 0), std::invalid_argument);
  if (!kernel_isa_available(KernelIsa::kAvx512)) {
    EXPECT_THROW(FlashTile(8, 8, 8, 8, KernelIsa::kAvx512), std::invalid_argument);
  }
  EXPECT_EQ(FlashTile(8, 8, 8, 8).isa(), best_kernel_isa());
}

// ---- the flash variant's kernels ---------------------------------------------------------------

using testing::error_vs_reference;
using testing::exact_tolerance;
using testing::make_inputs;
using testing::make_problem;
using testing::run_variant;

std::vector<std::string> flash_kernels() {
  std::vector<std::string> out = {"auto", "portable", "eigen"};
  if (kernel_isa_available(KernelIsa::kAvx2)) out.push_back("avx2");
  if (kernel_isa_available(KernelIsa::kAvx512)) out.push_back("avx512");
  return out;
}

TEST(FlashKernels, EveryKernelMatchesTheReferenceOnAwkwardShapes) {
  struct Shape {
    Index n_q, n_k, d, d_v;
  };
  const Shape shapes[] = {{37, 100, 1, 1}, {100, 37, 13, 64}, {65, 65, 64, 13}, {50, 70, 128, 33}};
  std::uint64_t seed = 20;
  for (const std::string& kernel : flash_kernels()) {
    for (const Shape& s : shapes) {
      for (bool causal : {false, true}) {
        for (auto [bq, bk] : {std::pair<Index, Index>{7, 13}, {96, 96}}) {
          const Problem p = make_problem(s.n_q, s.n_k, s.d, s.d_v, 2, 1, causal, true);
          const auto in = make_inputs(p, seed++);
          const Json params = {{"block_q", bq}, {"block_k", bk}, {"kernel", kernel}};
          const ErrorMetrics m = error_vs_reference(run_variant("flash", params, p, in), p, in);
          EXPECT_EQ(m.nonfinite, 0) << params.dump() << " " << p.to_string();
          EXPECT_LE(m.max_abs, exact_tolerance(p, in)) << params.dump() << " " << p.to_string();
          EXPECT_EQ(m.masked_rows_max_abs, 0.0) << params.dump() << " " << p.to_string();
        }
      }
    }
  }
}

TEST(FlashKernels, KernelParameterIsResolvedOrRejected) {
  const Problem p = make_problem(20, 30, 8, 8, 1, 1);
  EXPECT_EQ(make_attention("flash", p)->resolved_params().at("kernel"),
            to_string(best_kernel_isa()));
  EXPECT_EQ(make_attention("flash", p, {{"kernel", "eigen"}})->resolved_params().at("kernel"),
            "eigen");
  if (!kernel_isa_available(KernelIsa::kAvx512)) {
    try {
      make_attention("flash", p, {{"kernel", "avx512"}});
      FAIL() << "expected std::invalid_argument";
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("flash"), std::string::npos) << msg;
      EXPECT_NE(msg.find("kernel"), std::string::npos) << msg;
      EXPECT_NE(msg.find("avx512"), std::string::npos) << msg;
    }
  }
}

TEST(FlashKernels, MemoryModelStaysSmallAndIndependentOfLength) {
  // Scratch is per thread and depends on the tiles and head dims only: under 16 MiB at
  // n = 65536, d = 64 (the suite's O(n) memory goal), and the same at n = 2^20.
  const VariantInfo& info = Registry::instance().get("flash");
  for (const std::string& kernel : flash_kernels()) {
    const ParamSet params = resolve_variant_params("flash", {{"kernel", kernel}});
    const Problem p = make_problem(65536, 65536, 64, 64, 1, 1);
    const Problem big = make_problem(1 << 20, 1 << 20, 64, 64, 1, 1);
    for (int threads : {1, 2}) {
      const double bytes = info.cost(p, params, threads).memory_bytes;
      EXPECT_GT(bytes, 0.0) << kernel;
      EXPECT_LT(bytes, 16.0 * 1024 * 1024) << kernel << " threads=" << threads;
      EXPECT_EQ(bytes, info.cost(big, params, threads).memory_bytes) << kernel;
    }
  }
}

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
// Heap bytes in use (glibc): arena plus mmapped chunks.
std::size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

TEST(FlashKernels, ForwardDoesNotAllocateAndSetupMatchesTheModel) {
  for (const std::string& kernel : {std::string("auto"), std::string("portable")}) {
    const Problem p = make_problem(700, 700, 64, 64, 1, 2, true);
    const auto in = make_inputs(p, 30);
    Tensor4 out(p.batch, p.heads, p.n_q, p.d_v);
    // oneTBB starts its workers and their thread-local state on first use: a process cost, not
    // the variant's, so it is paid before counting.
    tbb::parallel_for(0, 1024, [](int) {});
    const std::size_t before = heap_in_use();
    auto attn = make_attention("flash", p, {{"kernel", kernel}});
    const std::size_t after_setup = heap_in_use();
    attn->forward(in.q, in.k, in.v, out, in.mask);
    attn->forward(in.q, in.k, in.v, out, in.mask);
    EXPECT_EQ(heap_in_use(), after_setup) << kernel;
    // Setup allocates the per-thread workspaces (one per arena slot) and little else.
    const ParamSet params = resolve_variant_params("flash", {{"kernel", kernel}});
    const int slots = tbb::this_task_arena::max_concurrency();
    const double model = Registry::instance().get("flash").cost(p, params, slots).memory_bytes;
    EXPECT_LE(double(after_setup - before), model + 64 * 1024) << kernel;
  }
}
#endif

}  // namespace
}  // namespace attnbench
