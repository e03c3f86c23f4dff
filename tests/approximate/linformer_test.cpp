// Linformer: identity projection (k = n_k) is exact attention; pool projection is exact when K
// is constant on each of the k segments, for any V (also with unequal segments and padding);
// pool error does not grow with k on sequence-smooth inputs; bad parameters are refused.
#include <gtest/gtest.h>

#include "tests/approximate/approx_test_util.h"

namespace attnbench {
namespace {

using approx_testing::expect_refusal;
using testing::make_problem;

struct Case {
  Index n_q, n_k, d, d_v, batch;
  bool padding;
};

class LinformerLimits : public ::testing::TestWithParam<Case> {};

TEST_P(LinformerLimits, IdentityIsExact) {
  const Case c = GetParam();
  const Problem p = make_problem(c.n_q, c.n_k, c.d, c.d_v, c.batch, 2, false, c.padding);
  const auto in = testing::make_inputs(p, 21 + c.n_k, 2.0);
  const Tensor4 out =
      testing::run_variant("linformer", {{"projection", "identity"}, {"k", c.n_k}}, p, in);
  EXPECT_LE(testing::error_vs_reference(out, p, in).max_abs, testing::exact_tolerance(p, in));
}

// K constant on each of the k segments [floor(r n/k), floor((r+1) n/k)): the pooled keys are the
// distinct keys, so softmax over them (with the log segment size) is exact for any V.
TEST_P(LinformerLimits, PoolIsExactOnSegmentConstantKeys) {
  const Case c = GetParam();
  const Problem p = make_problem(c.n_q, c.n_k, c.d, c.d_v, c.batch, 2, false, c.padding);
  for (Index k : {Index(1), Index(7), c.n_k / 3, c.n_k}) {
    if (k < 1) continue;
    auto in = testing::make_inputs(p, 31 + k, 2.0);
    for (Index b = 0; b < p.batch; ++b) {
      for (Index h = 0; h < p.heads; ++h) {
        auto keys = in.k.head(b, h);
        for (Index r = 0; r < k; ++r) {
          const Index j0 = (r * p.n_k) / k, j1 = ((r + 1) * p.n_k) / k;
          for (Index j = j0 + 1; j < j1; ++j) keys.row(j) = keys.row(j0);
        }
      }
    }
    const Tensor4 out =
        testing::run_variant("linformer", {{"projection", "pool"}, {"k", k}}, p, in);
    // Segment means of V add a rounding of eps log2(segment size) relative to max |V|.
    const double tol = testing::exact_tolerance(p, in) * (1.0 + std::log2(double(p.n_k)));
    EXPECT_LE(testing::error_vs_reference(out, p, in).max_abs, tol) << "k=" << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinformerLimits,
                         ::testing::Values(Case{64, 64, 16, 16, 1, false},
                                           Case{100, 77, 8, 5, 2, true},
                                           Case{33, 301, 32, 8, 3, true},
                                           Case{5000 / 40, 4100, 8, 4, 1, false}));

// Keys and queries that drift smoothly along the sequence (random walks): pooling over shorter
// segments loses less, so the mean error over seeds does not grow with k.
TEST(LinformerBudget, PoolErrorDoesNotGrowWithK) {
  const Problem p = make_problem(256, 256, 16, 16, 1, 2);
  double previous = 1e300;
  for (Index k : {8, 32, 128, 256}) {
    double total = 0;
    const int seeds = 4;
    for (int s = 0; s < seeds; ++s) {
      auto in = testing::make_inputs(p, 40 + s);
      for (Tensor4* t : {&in.q, &in.k}) {
        for (Index h = 0; h < p.heads; ++h) {
          auto x = t->head(0, h);
          for (Index j = 1; j < p.n_k; ++j) x.row(j) = x.row(j - 1) + 0.15f * x.row(j);
        }
      }
      const Tensor4 out =
          testing::run_variant("linformer", {{"projection", "pool"}, {"k", k}}, p, in);
      total += testing::error_vs_reference(out, p, in).rel_fro;
    }
    EXPECT_LE(total / seeds, previous) << "k=" << k;
    previous = total / seeds;
  }
}

// The default jl projection (E = F with iid N(0, 1/k) entries): K' = E K and V' = E V are k
// random mixtures of all n keys and values, each row of norm about sqrt(n / k) times a key's, so
// small k gives few, large, noisy projected keys and values. Each seed draws new Gaussian inputs
// and a new E (the variant's seed); every k runs on the same (inputs, seed) pairs. The mean
// relative error over seeds must not grow with k (strictly: no standard-error allowance).
TEST(LinformerBudget, JlErrorDoesNotGrowWithK) {
  const Problem p = make_problem(256, 256, 16, 16, 1, 2);
  const int seeds = 6;
  double previous = std::numeric_limits<double>::infinity();
  for (Index k : {16, 64, 256}) {
    const double err = approx_testing::mean(
        approx_testing::errors_over_seeds("linformer", {{"k", k}}, p, seeds, /*sigma=*/1.0));
    EXPECT_LE(err, previous) << "k=" << k;
    previous = err;
  }
}

TEST(LinformerJl, RunsAndDiffersFromExactButIsFinite) {
  const Problem p = make_problem(300, 300, 16, 16, 2, 2, false, true);
  const auto in = testing::make_inputs(p, 3);
  const Tensor4 a = testing::run_variant("linformer", {{"k", 64}, {"seed", 1}}, p, in);
  const Tensor4 b = testing::run_variant("linformer", {{"k", 64}, {"seed", 2}}, p, in);
  EXPECT_TRUE(testing::all_finite(a));
  EXPECT_GT(testing::max_abs_diff(a, b), 0.0) << "the seed must change the projection";
}

TEST(LinformerParams, BadParametersAreRefused) {
  const Problem p = make_problem(64, 64, 16, 16);
  expect_refusal("linformer", p, {{"projection", "identity"}, {"k", 65}},
                 {"linformer", "'k'", "65", "identity"});
  expect_refusal("linformer", p, {{"projection", "identity"}, {"k", 32}},
                 {"linformer", "'k'", "32", "identity"});
  expect_refusal("linformer", p, {{"k", 0}}, {"linformer", "'k'", "0"});
  expect_refusal("linformer", p, {{"projection", "learned"}},
                 {"linformer", "projection", "learned"});
  const Problem causal = make_problem(64, 64, 16, 16, 1, 2, /*causal=*/true);
  expect_refusal("linformer", causal, Json::object(), {"linformer", "causal"});
}

TEST(LinformerParams, KIsClippedToTheSequenceAndReported) {
  const Problem p = make_problem(50, 40, 8, 8);
  const auto attn = make_attention("linformer", p, {{"k", 256}, {"projection", "pool"}});
  EXPECT_EQ(attn->resolved_params().at("k"), 40);
}

}  // namespace
}  // namespace attnbench
