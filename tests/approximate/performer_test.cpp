// Performer (FAVOR+): the kernel estimate is unbiased; the variant equals the masked quadratic
// form built from the same features (causal prefix form included, epsilon > 0 included, with the
// references' stabilisers); stabilisers do not change the output at epsilon = 0; the error
// falls like m^-1/2 on small-norm inputs and never grows with m; bad parameters are refused.
#include <gtest/gtest.h>

#include "tests/approximate/approx_test_util.h"
#include "variants/approximate/feature_maps.h"

namespace attnbench {
namespace {

using approx_testing::expect_refusal;
using approx_testing::mean;
using approx_testing::scaled_inputs;
using approx_testing::std_error;
using testing::make_problem;

struct KernelCase {
  bool orthogonal;
  FavorKind kind;
};

class PerformerKernel : public ::testing::TestWithParam<KernelCase> {};

// E[phi(x)^T phi(y)] = exp(<x', y'>) with epsilon = 0 and no stabiliser: the mean over T
// independent draws must lie within 3 standard errors (estimated from the same draws).
TEST_P(PerformerKernel, EstimateIsUnbiased) {
  const KernelCase c = GetParam();
  const Index d = 8, m = 16;
  const int draws = 4000;
  const double scale = 1.0 / std::sqrt(double(d));
  Rng rng(77);
  RowMatrix xy(2, d);
  for (Index i = 0; i < xy.size(); ++i) xy.data()[i] = float(0.5 * rng.normal());
  const double target = std::exp(scale * double(xy.row(0).dot(xy.row(1))));
  std::vector<double> est;
  for (int t = 0; t < draws; ++t) {
    const RowMatrix w = favor_projection_for_head(t, 0, m, c.kind, d, c.orthogonal);
    const RowMatrix phi = favor_feature_map(xy, w, scale, c.kind, 0.0, /*stabilise=*/false);
    est.push_back(double(phi.row(0).dot(phi.row(1))));
  }
  const double se = std_error(est);
  EXPECT_GT(se, 0.0);
  EXPECT_LE(std::fabs(mean(est) - target), 3.0 * se)
      << "mean " << mean(est) << " target " << target << " se " << se;
}

INSTANTIATE_TEST_SUITE_P(Kinds, PerformerKernel,
                         ::testing::Values(KernelCase{true, FavorKind::kPositive},
                                           KernelCase{false, FavorKind::kPositive},
                                           KernelCase{true, FavorKind::kHyperbolic},
                                           KernelCase{false, FavorKind::kHyperbolic}));

TEST(PerformerProjection, OrthogonalBlocksHaveOrthogonalRows) {
  const Index d = 8;
  const RowMatrix w = favor_projection_for_head(3, 1, 20, FavorKind::kPositive, d, true);
  for (Index r0 = 0; r0 < w.rows(); r0 += d) {
    const Index rows = std::min(d, w.rows() - r0);
    const RowMatrix g = w.middleRows(r0, rows) * w.middleRows(r0, rows).transpose();
    for (Index i = 0; i < rows; ++i) {
      for (Index j = 0; j < rows; ++j) {
        if (i != j) {
          EXPECT_NEAR(g(i, j), 0.0, 1e-4 * g(i, i)) << r0 << " " << i << " " << j;
        }
      }
    }
  }
}

// The output of the explicit feature map phi(x) = (exp(u - c) + epsilon) (the common m^-1/2
// cancels), in double: o_i = sum_j phi_q(i).phi_k(j) v_j / sum_j phi_q(i).phi_k(j) over the keys
// row i may see. With `stabilise`, c is the references' constants: the query row's largest
// projection, and for keys the largest projection over the valid keys the row may see (all of
// them when not causal); otherwise c = 0.
RowMatrixD explicit_form(const Problem& p, const testing::Inputs& in, Index b, Index h,
                         const Json& params, bool stabilise) {
  const Index m = params.value("features", 256);
  const FavorKind kind = parse_favor_kind(params.value("kind", std::string("positive")));
  const double eps = params.value("epsilon", 0.0);
  const RowMatrix w = favor_projection_for_head(params.value("seed", 0), h, m, kind, p.d,
                                                params.value("orthogonal", true));
  const double scale = p.effective_scale();
  const RowMatrix ws = float(std::sqrt(scale)) * w;
  RowMatrix uq(p.n_q, m), uk(p.n_k, m);
  std::vector<float> pq(p.n_q), pk(p.n_k);
  favor_exponents(in.q.head(b, h), ws, scale, kind, uq, pq.data());
  favor_exponents(in.k.head(b, h), ws, scale, kind, uk, pk.data());
  const RowMatrixD v = in.v.head(b, h).cast<double>();
  RowMatrixD out = RowMatrixD::Zero(p.n_q, p.d_v);
  for (Index i = 0; i < p.n_q; ++i) {
    const double cq = stabilise ? pq[i] : 0.0;
    double ck = -1e300;
    Index seen = 0;
    for (Index j = 0; j < p.n_k; ++j) {
      if (p.allowed(i, j) && in.mask.valid(b, j)) {
        ck = std::max(ck, double(pk[j]));
        ++seen;
      }
    }
    if (seen == 0) continue;
    if (!stabilise) ck = 0.0;
    Eigen::VectorXd fq(m);
    for (Index f = 0; f < m; ++f) fq(f) = std::exp(double(uq(i, f)) - cq) + eps;
    double den = 0;
    for (Index j = 0; j < p.n_k; ++j) {
      if (!p.allowed(i, j) || !in.mask.valid(b, j)) continue;
      double wij = 0;
      for (Index f = 0; f < m; ++f) wij += fq(f) * (std::exp(double(uk(j, f)) - ck) + eps);
      out.row(i) += wij * v.row(j);
      den += wij;
    }
    out.row(i) /= den;
  }
  return out;
}

struct FormCase {
  Index n_q, n_k, d;
  bool causal, padding;
  Json params;
};

class PerformerForms : public ::testing::TestWithParam<FormCase> {};

// The variant (chunked prefix sums when causal, per-span sums otherwise) equals the explicit
// quadratic form built from the same features, stabilised as the references do; at epsilon = 0
// it also equals the unstabilised form (stabiliser invariance).
TEST_P(PerformerForms, EqualsTheQuadraticFormOfItsFeatures) {
  const FormCase c = GetParam();
  const Problem p = make_problem(c.n_q, c.n_k, c.d, 5, 2, 2, c.causal, c.padding);
  const auto in = scaled_inputs(p, 5 + c.n_q, 0.6);
  const Tensor4 out = testing::run_variant("performer", c.params, p, in);
  const double max_v = approx_testing::max_abs(in.v);
  // Every weight is a positive sum of m products, every output a ratio of sums over <= n_k
  // keys, summed in blocks: float rounding grows like eps log2(m n_k), relative to max |v|.
  const Index m = c.params.value("features", 256);
  const double tol = 8.0 * testing::kFloatEps * (std::log2(double(m * c.n_k)) + 8.0) * max_v;
  const bool eps_zero = c.params.value("epsilon", 0.0) == 0.0;
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      const RowMatrixD ref = explicit_form(p, in, b, h, c.params, true);
      EXPECT_LE((out.head(b, h).cast<double>() - ref).cwiseAbs().maxCoeff(), tol)
          << "b=" << b << " h=" << h;
      if (eps_zero) {
        const RowMatrixD raw = explicit_form(p, in, b, h, c.params, false);
        EXPECT_LE((raw - ref).cwiseAbs().maxCoeff(), 1e-9 * max_v) << "stabiliser changed it";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PerformerForms,
    ::testing::Values(FormCase{150, 150, 16, true, false, {{"features", 32}}},
                      FormCase{150, 150, 16, false, false, {{"features", 32}}},
                      FormCase{130, 70, 8, true, true, {{"features", 24}, {"seed", 3}}},
                      FormCase{70, 130, 8, true, true, {{"features", 24}, {"orthogonal", false}}},
                      FormCase{150, 150, 16, true, true, {{"features", 32}, {"epsilon", 1e-3}}},
                      FormCase{150, 1100, 16, false, true, {{"features", 32}, {"epsilon", 1e-3}}},
                      FormCase{
                          140, 140, 16, true, false, {{"features", 32}, {"kind", "hyperbolic"}}},
                      FormCase{140,
                               140,
                               16,
                               false,
                               true,
                               {{"features", 32}, {"kind", "hyperbolic"}, {"epsilon", 1e-2}}}));

// Largest |w_f| |x'_i| + |x'_i|^2 / 2 over every query and key row of every head and every
// direction: a bound on |u_if| and on the sum of the absolute terms of the exponent
// u_if = <w_f, x'_i> - |x'_i|^2 / 2 (x' = scale^1/2 x).
double exponent_magnitude(const Problem& p, const testing::Inputs& in, const Json& params) {
  const Index m = params.value("features", 256);
  const FavorKind kind = parse_favor_kind(params.value("kind", std::string("positive")));
  const double scale = p.effective_scale();
  double u = 0;
  for (Index h = 0; h < p.heads; ++h) {
    const RowMatrix w = favor_projection_for_head(params.value("seed", 0), h, m, kind, p.d,
                                                  params.value("orthogonal", true));
    const double w_norm = std::sqrt(scale) * double(w.rowwise().norm().maxCoeff());
    for (Index b = 0; b < p.batch; ++b) {
      for (const Tensor4* t : {&in.q, &in.k}) {
        const double x_norm = std::sqrt(scale) * double(t->head(b, h).rowwise().norm().maxCoeff());
        u = std::max(u, w_norm * x_norm + 0.5 * x_norm * x_norm);
      }
    }
  }
  return u;
}

// Largest exponent max_f u_if + max_{j,f} u_jf of the unstabilised weights phi_q(i).phi_k(j)
// over the query rows of head h, minimised over rows: below log(FLT_MIN) some row's unstabilised
// float weights all underflow.
double lowest_row_exponent(const Problem& p, const testing::Inputs& in, const Json& params,
                           Index h) {
  const Index m = params.value("features", 256);
  const double scale = p.effective_scale();
  const RowMatrix ws =
      float(std::sqrt(scale)) *
      favor_projection_for_head(params.value("seed", 0), h, m, FavorKind::kPositive, p.d, true);
  RowMatrix uq(p.n_q, m), uk(p.n_k, m);
  favor_exponents(in.q.head(0, h), ws, scale, FavorKind::kPositive, uq, nullptr);
  favor_exponents(in.k.head(0, h), ws, scale, FavorKind::kPositive, uk, nullptr);
  return double(uq.rowwise().maxCoeff().minCoeff()) + double(uk.maxCoeff());
}

// Stabiliser invariance where the stabilisers matter numerically: Q, K ~ N(0, sigma^2 I) with
// d = 16, so |x'|^2 = sigma^2 sqrt(d) (16 at sigma = 2, 256 at sigma = 8) and the unstabilised
// features exp(u) span tens (sigma = 2) or hundreds (sigma = 8) of orders of magnitude. At
// epsilon = 0 the query and key constants cancel exactly, so the variant (float, stabilised) must
// be finite and equal the unstabilised explicit form in double, causal and not, over one key block
// (n = 128) and across key blocks and causal chunks (n = 300).
// Tolerance: each exponent is a float dot product of d terms minus a norm, so either computation
// gets it within (d + 2) eps U (U = exponent_magnitude); the two differ by at most 2 (d + 2) eps U
// per exponent, so a weight phi_q.phi_k (two exponents) by a relative 4 (d + 2) eps U, plus
// eps (log2(m n_k) + 4) for the exponentials and the sums over m features and n_k keys; a ratio
// of positive weighted sums of v moves by at most twice the relative weight change times max |v|.
// With `control`, epsilon = 1e-2 breaks the cancellation: the variant must then equal the
// stabilised form within the same tolerance and differ from the unstabilised one by more, so the
// comparison can fail.
void expect_stabiliser_invariance(double sigma, bool control) {
  const Index m = 64;
  for (Index n : {128, 300}) {
    for (bool causal : {false, true}) {
      const Problem p = make_problem(n, n, 16, 8, 1, 2, causal);
      const auto in = scaled_inputs(p, 17 + n, sigma);
      const Json params = {{"features", m}, {"seed", 5}};
      const double max_v = approx_testing::max_abs(in.v);
      const double rel =
          4.0 * double(p.d + 2) * testing::kFloatEps * exponent_magnitude(p, in, params) +
          testing::kFloatEps * (std::log2(double(m * n)) + 4.0);
      const double tol = 2.0 * rel * max_v;
      const std::string where = "sigma=" + std::to_string(sigma) + " n=" + std::to_string(n) +
                                " causal=" + std::to_string(causal) + " tol=" + std::to_string(tol);
      const Tensor4 out = testing::run_variant("performer", params, p, in);
      ASSERT_TRUE(testing::all_finite(out)) << where;
      for (Index h = 0; h < p.heads; ++h) {
        const RowMatrixD raw = explicit_form(p, in, 0, h, params, /*stabilise=*/false);
        ASSERT_TRUE(raw.allFinite()) << where;
        const RowMatrixD diff = (out.head(0, h).cast<double>() - raw).cwiseAbs();
        Index row = 0;
        EXPECT_LE(diff.rowwise().maxCoeff().maxCoeff(&row), tol)
            << where << " h=" << h << " worst row " << row << ": |o| "
            << out.head(0, h).row(row).norm() << ", unstabilised double form |o| "
            << raw.row(row).norm();
      }
      if (!control) continue;
      Json with_eps = params;
      with_eps["epsilon"] = 1e-2;
      const Tensor4 out_eps = testing::run_variant("performer", with_eps, p, in);
      ASSERT_TRUE(testing::all_finite(out_eps)) << where;
      for (Index h = 0; h < p.heads; ++h) {
        const RowMatrixD o = out_eps.head(0, h).cast<double>();
        const RowMatrixD stab = explicit_form(p, in, 0, h, with_eps, /*stabilise=*/true);
        const RowMatrixD raw = explicit_form(p, in, 0, h, with_eps, /*stabilise=*/false);
        EXPECT_LE((o - stab).cwiseAbs().maxCoeff(), tol) << where << " h=" << h << " epsilon > 0";
        EXPECT_GT((o - raw).cwiseAbs().maxCoeff(), tol)
            << where << " h=" << h << " control: epsilon > 0 must not cancel";
      }
    }
  }
}

TEST(PerformerStabilisers, LeaveTheOutputUnchangedOnLargeNormInputs) {
  expect_stabiliser_invariance(2.0, /*control=*/true);
}

// At sigma = 8 every unstabilised product exp(u_q + u_k) of some query row lies below the smallest
// normal float (asserted): unstabilised float features could not represent that row at all, while
// the double form still can (every exponent stays far above -700). No epsilon control here: the
// references' query constant is the largest projection, not the largest exponent, so the
// stabilised features are still about exp(-|x'|^2 / 2) and any epsilon > 0 swamps both forms.
TEST(PerformerStabilisers, LeaveTheOutputUnchangedOnVeryLargeNormInputs) {
  for (Index n : {128, 300}) {
    const Problem p = make_problem(n, n, 16, 8, 1, 2);
    const auto in = scaled_inputs(p, 17 + n, 8.0);
    double lowest = 1e300;
    for (Index h = 0; h < p.heads; ++h) {
      lowest = std::min(lowest, lowest_row_exponent(p, in, {{"features", 64}, {"seed", 5}}, h));
    }
    ASSERT_LT(lowest, std::log(double(std::numeric_limits<float>::min()))) << "n=" << n;
  }
  expect_stabiliser_invariance(8.0, /*control=*/false);
}

// Small-norm inputs (|q'|^2 about 0.5): the relative error falls like m^-1/2, so the mean error
// at m and 16 m differ by a factor of about 4. Each seed gives an independent draw of the
// features and inputs; the ratio's standard error comes from the per-seed spread (delta method),
// plus 15% for the O(1/m) terms of a ratio estimator at the smaller m.
TEST(PerformerConvergence, ErrorFallsLikeInverseSqrtFeatures) {
  const Problem p = make_problem(256, 256, 16, 16, 1, 2);
  const int seeds = 12;
  const double sigma = 0.35;  // sigma^2 sqrt(16) = 0.49
  const auto small =
      approx_testing::errors_over_seeds("performer", {{"features", 64}}, p, seeds, sigma);
  const auto large =
      approx_testing::errors_over_seeds("performer", {{"features", 1024}}, p, seeds, sigma);
  const double ratio = mean(small) / mean(large);
  const double rel_se = std::hypot(std_error(small) / mean(small), std_error(large) / mean(large));
  EXPECT_NEAR(ratio, 4.0, 4.0 * (3.0 * rel_se + 0.15))
      << "mean error " << mean(small) << " at m=64, " << mean(large) << " at m=1024";
}

TEST(PerformerConvergence, ErrorDoesNotGrowWithFeatures) {
  const Problem p = make_problem(200, 200, 16, 16, 1, 2);
  for (const char* kind : {"positive", "hyperbolic"}) {
    double previous = 1e300;
    for (int m : {16, 64, 256, 1024}) {
      const double err = mean(approx_testing::errors_over_seeds(
          "performer", {{"features", m}, {"kind", kind}}, p, 6, 0.35));
      EXPECT_LE(err, previous) << kind << " m=" << m;
      previous = err;
    }
  }
}

TEST(PerformerParams, BadParametersAreRefused) {
  const Problem p = make_problem(64, 64, 16, 16);
  expect_refusal("performer", p, {{"features", 0}}, {"performer", "features", "0"});
  expect_refusal("performer", p, {{"features", 33}, {"kind", "hyperbolic"}},
                 {"performer", "features", "33", "even"});
  expect_refusal("performer", p, {{"kind", "trig"}}, {"performer", "kind", "trig"});
  expect_refusal("performer", p, {{"epsilon", -1e-3}}, {"performer", "epsilon"});
}

}  // namespace
}  // namespace attnbench
