// Scatterbrain: with full support (every window covers every key) it is exact attention; its
// error does not grow with the number of features or with the window (mean over seeds, on
// small-norm inputs where the low-rank part is informative); bad parameters are refused.
#include <gtest/gtest.h>

#include "tests/approximate/approx_test_util.h"
#include "variants/approximate/feature_maps.h"

namespace attnbench {
namespace {

using approx_testing::expect_refusal;
using approx_testing::mean;
using testing::make_problem;

struct Case {
  Index n_q, n_k, d, d_v, batch;
  bool padding;
};

class ScatterbrainLimits : public ::testing::TestWithParam<Case> {};

// The window of row i is [c_i - w/2, c_i - w/2 + w), c_i = i + n_k - n_q: with w >= 2 max(n_q,
// n_k) it covers every key of every row.
TEST_P(ScatterbrainLimits, FullSupportIsExact) {
  const Case c = GetParam();
  const Problem p = make_problem(c.n_q, c.n_k, c.d, c.d_v, c.batch, 2, false, c.padding);
  const auto in = testing::make_inputs(p, 90 + c.n_k, 2.0);
  const Index w = 2 * std::max(c.n_q, c.n_k);
  const Tensor4 out = testing::run_variant("scatterbrain", {{"width", w}}, p, in);
  EXPECT_LE(testing::error_vs_reference(out, p, in).max_abs, testing::exact_tolerance(p, in));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ScatterbrainLimits,
                         ::testing::Values(Case{1, 1, 4, 4, 1, false},
                                           Case{64, 64, 16, 16, 1, false},
                                           Case{100, 77, 8, 5, 2, true},
                                           Case{61, 300, 32, 8, 3, true}));

// Just short of full support (w = 380 < 2 n = 400: the first and last rows still reach a few keys
// through the low-rank part only), with key padding: the output is finite and, on the same inputs
// and features, its error is below that of a narrow window (w = 16), where the low-rank part
// carries most of the mass. Each seed draws new small-norm inputs and new features; the paired
// differences e_16(s) - e_380(s) must have a mean above 3 of their standard errors (one-sided
// t-test at about the 2% level with 4 degrees of freedom). ScatterbrainBudget checks the width
// sweep up to half support without padding; this covers the near-full end with padding.
TEST(Scatterbrain, NearlyFullSupportBeatsANarrowWindow) {
  const Problem p = make_problem(200, 200, 16, 16, 2, 2, false, true);
  const int seeds = 5;
  std::vector<double> fall;
  for (int s = 0; s < seeds; ++s) {
    const auto in = approx_testing::scaled_inputs(p, 3 + s, 0.35);
    double err[2];
    for (int wide = 0; wide < 2; ++wide) {
      const Json params = {{"width", wide ? 380 : 16}, {"seed", s}};
      const Tensor4 out = testing::run_variant("scatterbrain", params, p, in);
      ASSERT_TRUE(testing::all_finite(out)) << params.dump();
      err[wide] = testing::error_vs_reference(out, p, in).rel_fro;
    }
    fall.push_back(err[0] - err[1]);
  }
  EXPECT_GT(mean(fall), 3.0 * approx_testing::std_error(fall))
      << "mean fall " << mean(fall) << " from w = 16 to w = 380";
}

// The variant equals the explicit sparse-plus-low-rank form in double with the same features:
// exact weights e^{s_ij} on the window (padded keys excluded), phi_i.phi_j =
// (1/m) sum_f exp(u_if + u_jf) elsewhere, normalised by the sum of both.
TEST(Scatterbrain, EqualsTheExplicitSparsePlusLowRankForm) {
  const Index m = 16, w = 24;
  for (auto [n_q, n_k] : {std::pair<Index, Index>{150, 150}, {90, 130}, {130, 90}}) {
    const Problem p = make_problem(n_q, n_k, 8, 5, 2, 2, false, true);
    const auto in = approx_testing::scaled_inputs(p, 7 + n_q, 0.5);
    const Tensor4 out =
        testing::run_variant("scatterbrain", {{"features", m}, {"width", w}, {"seed", 4}}, p, in);
    const double scale = p.effective_scale(), max_v = approx_testing::max_abs(in.v);
    for (Index b = 0; b < p.batch; ++b) {
      for (Index h = 0; h < p.heads; ++h) {
        const RowMatrix dirs = float(std::sqrt(scale)) *
                               favor_projection_for_head(4, h, m, FavorKind::kPositive, p.d, true);
        RowMatrix uq(p.n_q, m), uk(p.n_k, m);
        favor_exponents(in.q.head(b, h), dirs, scale, FavorKind::kPositive, uq, nullptr);
        favor_exponents(in.k.head(b, h), dirs, scale, FavorKind::kPositive, uk, nullptr);
        double worst = 0;
        for (Index i = 0; i < p.n_q; ++i) {
          const Index start = i + p.n_k - p.n_q - w / 2;
          Eigen::RowVectorXd num = Eigen::RowVectorXd::Zero(p.d_v);
          double den = 0;
          for (Index j = 0; j < p.n_k; ++j) {
            if (!in.mask.valid(b, j)) continue;
            double wij = 0;
            if (j >= start && j < start + w) {
              wij = std::exp(scale * in.q.head(b, h).row(i).cast<double>().dot(
                                         in.k.head(b, h).row(j).cast<double>()));
            } else {
              for (Index f = 0; f < m; ++f) wij += std::exp(double(uq(i, f)) + double(uk(j, f)));
              wij /= double(m);
            }
            num += wij * in.v.head(b, h).row(j).cast<double>();
            den += wij;
          }
          const Eigen::RowVectorXd ref = num / den;
          worst =
              std::max(worst, (out.head(b, h).row(i).cast<double>() - ref).cwiseAbs().maxCoeff());
        }
        // Float rounding of sums over m features and n_k keys, relative to max |v|.
        EXPECT_LE(worst, 8.0 * testing::kFloatEps * (std::log2(double(m * n_k)) + 8.0) * max_v)
            << "n_q=" << n_q << " n_k=" << n_k << " b=" << b << " h=" << h;
      }
    }
  }
}

TEST(ScatterbrainBudget, ErrorDoesNotGrowWithFeaturesOrWidth) {
  const Problem p = make_problem(256, 256, 16, 16, 1, 2);
  const int seeds = 6;
  double previous = 1e300;
  for (int m : {8, 32, 128, 512}) {
    const double err = mean(approx_testing::errors_over_seeds(
        "scatterbrain", {{"features", m}, {"width", 32}}, p, seeds, 0.35));
    EXPECT_LE(err, previous) << "features=" << m;
    previous = err;
  }
  previous = 1e300;
  for (int w : {8, 32, 128, 256}) {
    const double err = mean(approx_testing::errors_over_seeds(
        "scatterbrain", {{"features", 32}, {"width", w}}, p, seeds, 0.35));
    EXPECT_LE(err, previous) << "width=" << w;
    previous = err;
  }
}

TEST(ScatterbrainParams, BadParametersAreRefused) {
  const Problem p = make_problem(64, 64, 16, 16);
  expect_refusal("scatterbrain", p, {{"width", 0}}, {"scatterbrain", "width", "0"});
  expect_refusal("scatterbrain", p, {{"features", 0}}, {"scatterbrain", "features", "0"});
  const Problem causal = make_problem(64, 64, 16, 16, 1, 2, /*causal=*/true);
  expect_refusal("scatterbrain", causal, Json::object(), {"scatterbrain", "causal"});
}

}  // namespace
}  // namespace attnbench
