// Nystromformer: with m = n and the exact (SVD) pseudo-inverse it equals exact attention; with Q
// and K constant on each of the m segments it is exact for any V (SVD), with unequal segments
// and padding too; the pseudo-inverse residual is reported; the error does not grow with m
// (mean over seeds); bad parameters are refused.
#include <gtest/gtest.h>

#include <Eigen/SVD>

#include "tests/approximate/approx_test_util.h"

namespace attnbench {
namespace {

using approx_testing::expect_refusal;
using testing::make_problem;

// The SVD limit inverts A in double, but A itself is the float softmax; B V and F carry float
// rounding that Z = A^+ maps back through A's conditioning. Tolerance: the exact-attention
// float tolerance times (1 + cond(A) eps_float) times log2 m for the length-m sums of F W.
// The bound grows with cond(A) without limit, so a badly conditioned A would make the limit
// test vacuous: it must stay below 1e-3 max |V| (a thousandth of the output's scale), which the
// inputs below are chosen to satisfy.
double svd_tolerance(const Problem& p, const testing::Inputs& in, double cond) {
  const double tol = testing::exact_tolerance(p, in) * (1.0 + cond * testing::kFloatEps) *
                     (1.0 + std::log2(double(std::min(p.n_q, p.n_k))));
  EXPECT_LE(tol, 1e-3 * approx_testing::max_abs(in.v))
      << "cond(A) = " << cond << " makes the exact-limit tolerance vacuous on " << p.to_string();
  return tol;
}

// Largest condition number over heads of the exact softmax(scale Q~ K~^T) the variant inverts,
// rebuilt in double from segment means (every segment non-empty and unpadded here).
double landmark_condition(const Problem& p, const testing::Inputs& in, Index m) {
  double worst = 1;
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      RowMatrixD ql = RowMatrixD::Zero(m, p.d), kl = RowMatrixD::Zero(m, p.d);
      for (Index r = 0; r < m; ++r) {
        const Index q0 = r * p.n_q / m, q1 = (r + 1) * p.n_q / m;
        const Index k0 = r * p.n_k / m, k1 = (r + 1) * p.n_k / m;
        for (Index i = q0; i < q1; ++i) ql.row(r) += in.q.head(b, h).row(i).cast<double>();
        for (Index j = k0; j < k1; ++j) kl.row(r) += in.k.head(b, h).row(j).cast<double>();
        ql.row(r) /= double(q1 - q0);
        kl.row(r) /= double(k1 - k0);
      }
      RowMatrixD a = (ql * kl.transpose() * p.effective_scale()).array().exp();
      for (Index r = 0; r < m; ++r) a.row(r) /= a.row(r).sum();
      Eigen::JacobiSVD<Eigen::MatrixXd> svd(a);
      const auto& sv = svd.singularValues();
      worst = std::max(worst, sv(0) / sv(sv.size() - 1));
    }
  }
  return worst;
}

struct Case {
  Index n_q, n_k, d, d_v, batch;
  bool padding;
};

class NystromLimits : public ::testing::TestWithParam<Case> {};

TEST_P(NystromLimits, SegmentConstantInputsAreExactForAnyV) {
  const Case c = GetParam();
  const Problem p = make_problem(c.n_q, c.n_k, c.d, c.d_v, c.batch, 2, false, c.padding);
  for (Index m : {Index(1), Index(5), std::min(c.n_q, c.n_k) / 3}) {
    if (m < 1) continue;
    auto in = testing::make_inputs(p, 51 + m, 1.5);
    if (c.padding) {
      // Pad fewer keys than half a segment, so no key landmark is all padding: a dropped
      // landmark leaves A rank-deficient and the limit no longer holds (F A^+ B projects B onto
      // the column space of A, which the row rescaling of B leaves).
      std::vector<Index> lengths;
      for (Index b = 0; b < p.batch; ++b)
        lengths.push_back(p.n_k - b * (p.n_k / m) / (2 * p.batch));
      in.mask = KeyMask::from_lengths(p.n_k, lengths);
    }
    for (Index b = 0; b < p.batch; ++b) {
      for (Index h = 0; h < p.heads; ++h) {
        for (auto [x, n] : {std::pair{in.q.head(b, h), p.n_q}, {in.k.head(b, h), p.n_k}}) {
          for (Index r = 0; r < m; ++r) {
            const Index j0 = r * n / m, j1 = (r + 1) * n / m;
            for (Index j = j0 + 1; j < j1; ++j) x.row(j) = x.row(j0);
          }
        }
      }
    }
    const Tensor4 out = testing::run_variant("nystrom", {{"landmarks", m}, {"pinv", "svd"}}, p, in);
    const double cond = landmark_condition(p, in, m);
    EXPECT_LE(testing::error_vs_reference(out, p, in).max_abs, svd_tolerance(p, in, cond))
        << "m=" << m << " cond(A)=" << cond;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, NystromLimits,
                         ::testing::Values(Case{64, 64, 16, 16, 1, false},
                                           Case{100, 77, 8, 5, 2, true},
                                           Case{61, 300, 32, 8, 3, true},
                                           Case{600, 590, 8, 4, 1, false}));

// Keys correlated with the queries (k = q + 0.75 g, g ~ N(0, I), q ~ N(0, 1.5^2 I)) give every
// row of A = softmax(scale Q K^T) a heavier diagonal than independent keys would, so A stays well
// enough conditioned at m = n for both bounds below to be small (asserted), while its rows still
// spread their weight over many keys.
TEST(Nystrom, LandmarksEqualToTheSequenceWithSvdIsExact) {
  for (Index n : {Index(1), Index(17), Index(64), Index(150)}) {
    const Problem p = make_problem(n, n, 16, 8, 2, 2);
    auto in = testing::make_inputs(p, 60 + n, 1.5);
    for (Index i = 0; i < in.k.size(); ++i) {
      in.k.data()[i] = in.q.data()[i] + 0.75f * in.k.data()[i];
    }
    const auto attn = make_attention("nystrom", p, {{"landmarks", n}, {"pinv", "svd"}});
    Tensor4 out(p.batch, p.heads, p.n_q, p.d_v);
    attn->forward(in.q, in.k, in.v, out, in.mask);
    const double cond = landmark_condition(p, in, n);
    EXPECT_LE(testing::error_vs_reference(out, p, in).max_abs, svd_tolerance(p, in, cond))
        << "n=" << n << " cond(A)=" << cond;
    // A Z A = A up to the float rounding of Z = A^+: |A dZ A|_F <= |A|_2^2 |dZ|_F with
    // |dZ|_F <= eps |Z|_F <= eps sqrt(n) / sigma_min, so the relative residual is at most
    // eps cond(A) sqrt(n), here with a factor 16 for the double SVD and the products. Z = 0 has
    // residual 1, so the bound is only informative well below 1: at most 1e-2.
    const double residual_bound = 16.0 * testing::kFloatEps * cond * std::sqrt(double(n));
    EXPECT_LE(residual_bound, 1e-2) << "n=" << n << " cond(A)=" << cond << " (vacuous bound)";
    EXPECT_LE(attn->diagnostics().at("pinv_residual_max").get<double>(), residual_bound)
        << "n=" << n;
  }
}

TEST(Nystrom, IterativeResidualIsReportedAndShrinksWithIterations) {
  const Problem p = make_problem(256, 256, 16, 16, 1, 2);
  const auto in = testing::make_inputs(p, 70);
  double previous = 1e300;
  for (int iters : {0, 2, 6, 20}) {
    const auto attn = make_attention("nystrom", p, {{"landmarks", 32}, {"pinv_iters", iters}});
    Tensor4 out(p.batch, p.heads, p.n_q, p.d_v);
    attn->forward(in.q, in.k, in.v, out, in.mask);
    const double r = attn->diagnostics().at("pinv_residual_max").get<double>();
    EXPECT_TRUE(std::isfinite(r));
    EXPECT_LE(r, previous) << "iters=" << iters;
    previous = r;
  }
}

// Queries and keys that drift smoothly along the sequence (random walks, the regime landmark
// methods are built for): more landmarks never make the mean error over seeds worse.
TEST(NystromBudget, ErrorDoesNotGrowWithLandmarks) {
  const Problem p = make_problem(512, 512, 16, 16, 1, 2);
  for (const char* pinv : {"iterative", "svd"}) {
    double previous = 1e300;
    for (Index m : {8, 32, 128}) {
      double total = 0;
      const int seeds = 4;
      for (int s = 0; s < seeds; ++s) {
        auto in = testing::make_inputs(p, 80 + s);
        for (Tensor4* t : {&in.q, &in.k}) {
          for (Index h = 0; h < p.heads; ++h) {
            auto x = t->head(0, h);
            for (Index j = 1; j < p.n_k; ++j) x.row(j) = x.row(j - 1) + 0.1f * x.row(j);
          }
        }
        const Tensor4 out =
            testing::run_variant("nystrom", {{"landmarks", m}, {"pinv", pinv}}, p, in);
        total += testing::error_vs_reference(out, p, in).rel_fro;
      }
      EXPECT_LE(total / seeds, previous) << pinv << " m=" << m;
      previous = total / seeds;
    }
  }
}

TEST(NystromParams, BadParametersAreRefused) {
  const Problem p = make_problem(64, 64, 16, 16);
  expect_refusal("nystrom", p, {{"landmarks", 0}}, {"nystrom", "landmarks", "0"});
  expect_refusal("nystrom", p, {{"pinv", "exact"}}, {"nystrom", "pinv", "exact"});
  expect_refusal("nystrom", p, {{"pinv_iters", -1}}, {"nystrom", "pinv_iters", "-1"});
  const Problem causal = make_problem(64, 64, 16, 16, 1, 2, /*causal=*/true);
  expect_refusal("nystrom", causal, Json::object(), {"nystrom", "causal"});
}

}  // namespace
}  // namespace attnbench
