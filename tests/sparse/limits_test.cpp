// Exact limits of every sparse pattern, keys that two parts of a pattern select (counted once,
// in cases where counting twice would visibly change the output), bad parameters, and the cost
// model's work counts.
#include <gtest/gtest.h>

#include "tests/sparse/sparse_test_util.h"

namespace attnbench {
namespace {

using testing::make_inputs;
using testing::make_problem;

TEST(SparseExactLimits, PatternsCoveringEveryKeyEqualExactAttention) {
  struct Case {
    std::string variant;
    Json params;
    bool causal;
  };
  const Index n = 130;  // not a multiple of any block used below
  const std::vector<Case> cases{
      {"window", {{"width", n - 1}}, false},
      {"window", {{"width", n - 1}}, true},
      {"window", {{"width", 100000}}, false},
      {"local_blocks", {{"block", 200}}, false},
      {"local_blocks", {{"block", n}, {"look_backward", 0}}, true},
      {"local_blocks", {{"block", 16}, {"look_backward", 8}, {"look_forward", 8}}, false},
      {"local_blocks", {{"block", 16}, {"look_backward", 9}, {"exact_window", true}}, true},
      {"strided", {{"stride", n}, {"mode", "local"}}, true},
      {"strided", {{"stride", n}, {"mode", "merged"}}, true},
      {"strided", {{"stride", 1000}, {"mode", "merged"}}, true},
      {"strided", {{"stride", 1}, {"mode", "stride"}}, true},
      {"fixed", {{"block", n}, {"mode", "local"}}, true},
      {"fixed", {{"block", 500}, {"summary", 3}, {"mode", "merged"}}, true},
      {"bigbird", {{"block", 64}}, false},                        // nb = 3
      {"bigbird", {{"block", 33}, {"random_blocks", 3}}, false},  // nb = 4
      {"bigbird", {{"block", 27}, {"random_blocks", 1}}, false},  // nb = 5, r = 1
      {"bigbird", {{"block", 16}, {"random_blocks", 5}}, false},  // nb = 9, r = nb - 4
      {"bigbird", {{"block", 16}, {"random_blocks", 5}}, true},
  };
  std::vector<Json> all_global;
  for (Index x = 0; x < n; ++x) all_global.push_back(x);
  std::uint64_t seed = 1;
  for (const auto& c : cases) {
    const Problem p = make_problem(n, n, 16, 8, 2, 2, c.causal, true);
    sparse_test::expect_exact(c.variant, c.params, p, make_inputs(p, ++seed),
                              sparse_test::describe(c.variant, c.params, p));
  }
  for (bool causal : {false, true}) {
    const Json params = {{"width", 0}, {"global", all_global}};
    const Problem p = make_problem(n, n, 16, 8, 2, 2, causal, true);
    sparse_test::expect_exact("longformer", params, p, make_inputs(p, ++seed),
                              "longformer, every token global");
  }
  // n_q != n_k: the window is measured on the bottom-right aligned grid.
  for (auto [n_q, n_k] : std::vector<std::pair<Index, Index>>{{40, 130}, {130, 40}}) {
    const Problem p = make_problem(n_q, n_k, 16, 8, 1, 2, false);
    sparse_test::expect_exact("window", {{"width", 129}}, p, make_inputs(p, ++seed),
                              "window, n_q != n_k");
  }
}

// out = sum_j m_ij e^{s_ij} v_j / sum_j m_ij e^{s_ij} in double: m = 1 is the pattern, m = 2
// what a kernel that counted a key twice would compute.
RowMatrixD weighted_attention(const Problem& p, const testing::Inputs& in, Index h,
                              const std::function<int(Index, Index)>& multiplicity) {
  RowMatrixD out = RowMatrixD::Zero(p.n_q, p.d_v);
  const RowMatrixD q = in.q.head(0, h).cast<double>(), k = in.k.head(0, h).cast<double>(),
                   v = in.v.head(0, h).cast<double>();
  for (Index i = 0; i < p.n_q; ++i) {
    std::vector<double> s(p.n_k, -std::numeric_limits<double>::infinity());
    double m = -std::numeric_limits<double>::infinity();
    for (Index j = 0; j < p.n_k; ++j) {
      if (multiplicity(i, j) == 0) continue;
      s[j] = p.effective_scale() * q.row(i).dot(k.row(j));
      m = std::max(m, s[j]);
    }
    double z = 0;
    for (Index j = 0; j < p.n_k; ++j) {
      const int mult = multiplicity(i, j);
      if (mult == 0) continue;
      const double w = mult * std::exp(s[j] - m);
      z += w;
      out.row(i) += w * v.row(j);
    }
    if (z > 0) out.row(i) /= z;
  }
  return out;
}

// A key selected by two parts of a pattern (window and global token, window and global block,
// local block and summary cell) is counted once; counting it twice would move the output by
// far more than the tolerance, so this test can fail.
TEST(SparseNoDoubleCounting, KeysSelectedTwiceCountOnce) {
  struct Case {
    std::string variant;
    Json params;
    bool causal;
    // Pairs selected by two parts of the pattern.
    std::function<bool(Index, Index)> twice;
  };
  const Index n = 96;
  const std::vector<Index> global{5, 40};
  auto is_global = [&](Index x) { return x == 5 || x == 40; };
  const std::vector<Case> cases{
      {"longformer",
       {{"width", 6}, {"global", global}},
       false,
       [&](Index i, Index j) { return is_global(j) && !is_global(i) && std::abs(i - j) <= 6; }},
      {"longformer",
       {{"width", 6}, {"global", global}},
       true,
       [&](Index i, Index j) { return is_global(j) && !is_global(i) && i - j >= 0 && i - j <= 6; }},
      // Block row 1's window holds the global block 0; block row nb - 2's holds block nb - 1.
      {"bigbird",
       {{"block", 16}, {"random_blocks", 1}},
       false,
       [&](Index i, Index j) {
         const Index T = i / 16, U = j / 16;
         return (T == 1 && U == 0) || (T == 4 && U == 5) ||
                (T != 0 && T != 5 && (U == 0 || U == 5) && std::abs(T - U) <= 1);
       }},
      // A summary cell of the query's own block.
      {"fixed",
       {{"block", 16}, {"summary", 4}},
       true,
       [&](Index i, Index j) { return j <= i && i / 16 == j / 16 && j % 16 >= 12; }},
  };
  for (const auto& c : cases) {
    const Problem p = make_problem(n, n, 16, 8, 1, 2, c.causal);
    const auto in = make_inputs(p, 77);
    const ParamSet s = resolve_variant_params(c.variant, c.params);
    auto attn = make_attention(c.variant, p, c.params);
    Tensor4 out(p.batch, p.heads, p.n_q, p.d_v);
    attn->forward(in.q, in.k, in.v, out);
    const auto* kernel = dynamic_cast<const BlockSparseAttention*>(attn.get());
    ASSERT_NE(kernel, nullptr);
    const double tol = testing::exact_tolerance(p, in);
    Index twice_pairs = 0;
    for (Index h = 0; h < p.heads; ++h) {
      const auto mask = kernel->layout(h).to_dense_mask();
      auto once = [&](Index i, Index j) { return int(mask[i * n + j]); };
      auto doubled = [&](Index i, Index j) { return once(i, j) * (c.twice(i, j) ? 2 : 1); };
      for (Index i = 0; i < n; ++i) {
        for (Index j = 0; j < n; ++j) twice_pairs += once(i, j) && c.twice(i, j);
      }
      const RowMatrixD ref_once = weighted_attention(p, in, h, once);
      const RowMatrixD ref_twice = weighted_attention(p, in, h, doubled);
      const double err = (out.head(0, h).cast<double>() - ref_once).cwiseAbs().maxCoeff();
      const double gap = (ref_twice - ref_once).cwiseAbs().maxCoeff();
      EXPECT_LE(err, tol) << c.variant << " " << c.params.dump() << " head " << h;
      EXPECT_GT(gap, 100 * tol) << c.variant << ": the case does not discriminate";
    }
    EXPECT_GT(twice_pairs, 0) << c.variant << ": no pair is selected twice";
  }
}

void expect_rejected(const std::string& variant, const Json& params, const Problem& p,
                     const std::vector<std::string>& needles) {
  const std::string label = sparse_test::describe(variant, params, p);
  try {
    make_attention(variant, p, params);
    ADD_FAILURE() << label << " was accepted";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    for (const auto& needle : needles) {
      EXPECT_NE(what.find(needle), std::string::npos)
          << label << ": message lacks '" << needle << "': " << what;
    }
  }
}

TEST(SparseParameters, BadValuesGiveClearErrors) {
  const Problem p = make_problem(512, 512, 16, 16, 1, 2);
  const Problem pc = make_problem(512, 512, 16, 16, 1, 2, true);
  expect_rejected("window", {{"width", -1}}, p, {"window", "'width'", "-1"});
  expect_rejected("window", {{"dilation", 0}}, p, {"window", "'dilation'", "0"});
  expect_rejected("local_blocks", {{"block", 0}}, p, {"local_blocks", "'block'", "0"});
  expect_rejected("local_blocks", {{"look_backward", -2}}, p, {"local_blocks", "'look_backward'"});
  expect_rejected("local_blocks", {{"look_forward", 1}}, pc,
                  {"local_blocks", "'look_forward'", "1", "causal"});
  expect_rejected("strided", {{"stride", 0}}, pc, {"strided", "'stride'", "0"});
  expect_rejected("strided", {{"mode", "dense"}}, pc, {"strided", "'mode'", "dense"});
  expect_rejected("strided", Json::object(), p, {"strided", "causal"});
  expect_rejected("fixed", {{"block", 0}}, pc, {"fixed", "'block'", "0"});
  expect_rejected("fixed", {{"block", 16}, {"summary", 17}}, pc, {"fixed", "'summary'", "17"});
  expect_rejected("fixed", Json::object(), p, {"fixed", "causal"});
  expect_rejected("bigbird", {{"block", 0}}, p, {"bigbird", "'block'", "0"});
  // nb = 8 blocks of 64: at most 4 random blocks fit.
  expect_rejected("bigbird", {{"random_blocks", 5}}, p, {"bigbird", "'random_blocks'", "5", "4"});
  expect_rejected("longformer", {{"global", {0, 600}}}, p,
                  {"longformer", "'global'", "600", "512"});
  expect_rejected("longformer", {{"global", {-1}}}, p, {"longformer", "'global'", "-1"});
  expect_rejected("longformer", {{"width", -3}}, p, {"longformer", "'width'", "-3"});
  expect_rejected("window", {{"radius", 3}}, p, {"window", "radius", "width"});
  // The cost model validates like the constructor.
  const VariantInfo& bigbird = Registry::instance().get("bigbird");
  EXPECT_THROW(bigbird.cost(p, resolve_variant_params("bigbird", {{"random_blocks", 5}}), 1),
               std::invalid_argument);
  // The largest r that fits is accepted.
  EXPECT_NO_THROW(make_attention("bigbird", p, {{"random_blocks", 4}}));
}

double computed_scores(const std::string& variant, const Json& params, const Problem& p) {
  auto attn = make_attention(variant, p, params);
  return attn->diagnostics().at("computed_scores").get<double>();
}

// The kernel's work follows the pattern: linear in n for a fixed window, little masked work in
// window tiles, none for aligned local blocks; the cost model's flops are 2 (d + d_v) per
// computed score.
TEST(SparseCost, WorkFollowsThePattern) {
  const Json window = {{"width", 256}};
  std::vector<double> work;
  for (Index n : {4096, 8192, 16384}) {
    const Problem p = make_problem(n, n, 64, 64, 1, 8);
    auto attn = make_attention("window", p, window);
    const Json diag = attn->diagnostics();
    const double computed = diag.at("computed_scores").get<double>();
    EXPECT_LT(diag.at("masked_fraction").get<double>(), 0.15) << n;
    const double allowed_per_row = 2 * 256 + 1;
    EXPECT_LT(computed, 1.15 * allowed_per_row * n * p.heads) << n;
    work.push_back(computed);
    const Cost c =
        Registry::instance().get("window").cost(p, resolve_variant_params("window", window), 2);
    EXPECT_DOUBLE_EQ(c.flops, 2.0 * 128 * computed);
    EXPECT_LT(c.memory_bytes, 2e6) << "layout + scratch of a window is small";
  }
  // Linear in n: every interior block row costs the same, so the work added from 8K to 16K is
  // exactly twice the work added from 4K to 8K.
  EXPECT_DOUBLE_EQ(work[2] - work[1], 2 * (work[1] - work[0]));
  // Causal: the diagonal and the far band edge are triangles, (b - 1) / (w + b) of the work.
  const Problem pc = make_problem(4096, 4096, 64, 64, 1, 8, true);
  EXPECT_LT(make_attention("window", pc, window)->diagnostics().at("masked_fraction").get<double>(),
            63.0 / 320.0 + 0.01);
  // lucidrains' configuration: every computed score is in the pattern.
  const Problem p = make_problem(4096, 4096, 64, 64, 1, 8);
  const Json local = {{"block", 256}, {"look_backward", 1}, {"look_forward", 1}};
  auto attn = make_attention("local_blocks", p, local);
  EXPECT_EQ(attn->diagnostics().at("masked_fraction").get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(computed_scores("local_blocks", local, p),
                   8.0 * (14 * 256 * 768 + 2 * 256 * 512));
  // Strided at l = sqrt(n) costs O(n^1.5), far below dense.
  const Problem ps = make_problem(16384, 16384, 64, 64, 1, 1, true);
  EXPECT_LT(computed_scores("strided", Json::object(), ps), 0.05 * 16384.0 * 16384.0);
}

}  // namespace
}  // namespace attnbench
