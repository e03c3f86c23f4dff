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
