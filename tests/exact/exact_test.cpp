// `full` and `flash` against the double reference (reference/variants.md §1-2): tile sizes that
// do and do not divide n, causal with n_q != n_k, key padding, fully masked rows, huge logits.
#include <gtest/gtest.h>

#include "tests/testing/test_util.h"

namespace attnbench {
namespace {

using testing::error_vs_reference;
using testing::exact_tolerance;
using testing::make_inputs;
using testing::make_problem;
using testing::run_variant;

void expect_exact(const std::string& variant, const Json& params, const Problem& p,
                  std::uint64_t seed, double temperature = 1.0) {
  const auto in = make_inputs(p, seed, temperature);
  const Tensor4 out = run_variant(variant, params, p, in);
  const ErrorMetrics m = error_vs_reference(out, p, in);
  const double tol = exact_tolerance(p, in);
  EXPECT_EQ(m.nonfinite, 0) << variant << " " << params.dump() << " " << p.to_string();
  EXPECT_LE(m.max_abs, tol) << variant << " " << params.dump() << " " << p.to_string();
  EXPECT_EQ(m.masked_rows_max_abs, 0.0) << variant << " " << p.to_string();
}

TEST(Exact, FullMatchesReference) {
  for (bool causal : {false, true}) {
    expect_exact("full", {}, make_problem(100, 100, 16, 8, 2, 2, causal), 1);
    expect_exact("full", {}, make_problem(37, 100, 16, 8, 1, 2, causal), 2);
    expect_exact("full", {}, make_problem(100, 37, 16, 8, 1, 2, causal), 3);
    expect_exact("full", {}, make_problem(64, 64, 64, 64, 3, 1, causal, true), 4);
  }
}

TEST(Exact, FlashMatchesReferenceForEveryTileShape) {
  const Index n = 100;  // divisible by none of the tile sizes below but 1
  for (Index bq : {Index(1), Index(7), Index(16), Index(64), n}) {
    for (Index bk : {Index(1), Index(13), Index(64), n}) {
      for (bool causal : {false, true}) {
        expect_exact("flash", {{"block_q", bq}, {"block_k", bk}},
                     make_problem(n, n, 16, 8, 1, 2, causal), 5);
      }
    }
  }
}

TEST(Exact, FlashCausalBottomRightWhenLengthsDiffer) {
  for (Index bq : {Index(7), Index(64)}) {
    for (Index bk : {Index(13), Index(64)}) {
      const Json params = {{"block_q", bq}, {"block_k", bk}};
      expect_exact("flash", params, make_problem(37, 100, 16, 8, 1, 2, true), 6);
      expect_exact("flash", params, make_problem(100, 37, 16, 8, 1, 2, true), 7);
    }
  }
}

TEST(Exact, FlashKeyPaddingAndFullyMaskedRows) {
  const Problem p = make_problem(70, 130, 16, 8, 3, 2, false, true);
  auto in = make_inputs(p, 8);
  // Batch entry 2: every key padded, so every row is fully masked.
  for (Index j = 0; j < p.n_k; ++j) in.mask.set(2, j, false);
  // Batch entry 1: a scattered mask that leaves some tiles fully masked for all rows.
  for (Index j = 0; j < 64; ++j) in.mask.set(1, j, false);
  for (Index j = 70; j < p.n_k; j += 3) in.mask.set(1, j, false);
  for (const char* variant : {"flash", "full"}) {
    for (Index bk : {Index(13), Index(64)}) {
      const Json params = std::string(variant) == "flash" ? Json{{"block_k", bk}} : Json::object();
      const Tensor4 out = run_variant(variant, params, p, in);
      const ErrorMetrics m = error_vs_reference(out, p, in);
      EXPECT_EQ(m.nonfinite, 0) << variant;
      EXPECT_EQ(m.rows_fully_masked, p.heads * p.n_q) << variant;
      EXPECT_EQ(m.masked_rows_max_abs, 0.0) << variant;
      EXPECT_LE(m.max_abs, exact_tolerance(p, in)) << variant;
    }
  }
}

TEST(Exact, HugeLogitsStayFinite) {
  // Logits of magnitude ~1e4: no overflow and no NaN; the softmax is a near one-hot.
  for (bool causal : {false, true}) {
    const Problem p = make_problem(65, 65, 8, 4, 1, 1, causal);
    for (const char* variant : {"flash", "full"}) expect_exact(variant, {}, p, 9, 1e4);
  }
}

TEST(Exact, FlashNoWorseThanFull) {
  // The tiled kernel's error stays within a small multiple of the materialised float one's.
  const Problem p = make_problem(512, 512, 64, 64, 1, 2, false);
  const auto in = make_inputs(p, 10, 2.0);
  const double e_full = error_vs_reference(run_variant("full", {}, p, in), p, in).max_abs;
  const double e_flash = error_vs_reference(run_variant("flash", {}, p, in), p, in).max_abs;
  EXPECT_LE(e_flash, 4.0 * e_full + 1e-7);
}

Index analytic_tiles(Index n_q, Index n_k, Index bq, Index bk, bool causal) {
  Index tiles = 0;
  for (Index i0 = 0; i0 < n_q; i0 += bq) {
    const Index last_row = std::min(n_q, i0 + bq) - 1;
    const Index key_end = causal ? std::clamp<Index>(last_row + (n_k - n_q) + 1, 0, n_k) : n_k;
    tiles += (key_end + bk - 1) / bk;
  }
  return tiles;
}

TEST(Exact, FlashVisitsTheAnalyticTileCount) {
  for (bool causal : {false, true}) {
    for (auto [n_q, n_k] : {std::pair<Index, Index>{256, 256}, {100, 300}, {300, 100}}) {
      const Problem p = make_problem(n_q, n_k, 8, 8, 1, 1, causal);
      const auto in = make_inputs(p, 11);
      auto attn = make_attention("flash", p, {{"block_q", 32}, {"block_k", 64}});
      Tensor4 out(1, 1, n_q, 8);
      attn->forward(in.q, in.k, in.v, out);
      EXPECT_EQ(attn->diagnostics().at("tiles_computed").get<Index>(),
                analytic_tiles(n_q, n_k, 32, 64, causal))
          << n_q << " " << n_k << " causal=" << causal;
    }
  }
  // Causal computes about half the tiles.
  EXPECT_LT(analytic_tiles(4096, 4096, 64, 64, true),
            0.52 * analytic_tiles(4096, 4096, 64, 64, false));
}

TEST(Exact, ResolvedParamsReportClippedTiles) {
  const Problem p = make_problem(20, 30, 8, 8, 1, 1);
  auto attn = make_attention("flash", p, {{"block_q", 64}, {"block_k", 128}});
  EXPECT_EQ(attn->resolved_params().at("block_q"), 20);
  EXPECT_EQ(attn->resolved_params().at("block_k"), 30);
}

TEST(Exact, ShapeMismatchIsAClearError) {
  const Problem p = make_problem(20, 30, 8, 8, 1, 1);
  auto attn = make_attention("flash", p);
  Tensor4 q(1, 1, 20, 8), k(1, 1, 31, 8), v(1, 1, 30, 8), out(1, 1, 20, 8);
  try {
    attn->forward(q, k, v, out);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("k has shape [1, 1, 31, 8]"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace attnbench
