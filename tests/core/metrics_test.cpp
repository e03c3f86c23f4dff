// Error metrics on inputs whose answers are known by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "attention/metrics.h"
#include "tests/testing/test_util.h"

namespace attnbench {
namespace {

// One head, two rows, d_v = 2, with the reference output and uniform output given directly.
HeadReference two_rows() {
  HeadReference r;
  r.rows = {0, 1};
  r.out = RowMatrixD{{3.0, 4.0}, {1.0, 0.0}};
  r.uniform = RowMatrixD{{0.0, 4.0}, {1.0, 1.0}};
  r.lse = {0.0, 0.0};
  r.entropy = {std::log(2.0), std::log(4.0)};
  r.sum_p2 = {0.5, 0.25};
  r.max_weight = {0.5, 0.25};
  r.allowed = {2, 4};
  return r;
}

TEST(Metrics, KnownAnswers) {
  Tensor4 out(1, 1, 2, 2), v(1, 1, 4, 2);
  // O' = [[3, 5], [1, 0]]: the error is 1 in one entry.
  out.at(0, 0, 0, 0) = 3;
  out.at(0, 0, 0, 1) = 5;
  out.at(0, 0, 1, 0) = 1;
  v.at(0, 0, 2, 1) = -10;  // max |V| = 10
  const ErrorMetrics m = compute_error(out, v, {two_rows()});
  EXPECT_EQ(m.rows_compared, 2);
  EXPECT_DOUBLE_EQ(m.rel_fro, 1.0 / std::sqrt(26.0));  // |O| = sqrt(25 + 1)
  EXPECT_DOUBLE_EQ(m.max_abs, 1.0);
  EXPECT_DOUBLE_EQ(m.max_abs_over_max_v, 0.1);
  // |Obar - O| = sqrt(9 + 1)
  EXPECT_DOUBLE_EQ(m.rel_uniform, 1.0 / std::sqrt(10.0));
  const double cos0 = (9.0 + 20.0) / (std::sqrt(34.0) * 5.0);
  EXPECT_DOUBLE_EQ(m.cos_min, cos0);
  EXPECT_DOUBLE_EQ(m.cos_mean, (cos0 + 1.0) / 2.0);
  EXPECT_DOUBLE_EQ(m.entropy_ratio, 1.0);  // both rows uniform over their allowed keys
  EXPECT_DOUBLE_EQ(m.n_eff_ratio, 1.0);
  EXPECT_DOUBLE_EQ(m.max_weight, (0.5 + 0.25) / 2.0);
}

TEST(Metrics, PerfectOutputHasZeroError) {
  Tensor4 out(1, 1, 2, 2), v(1, 1, 4, 2);
  out.at(0, 0, 0, 0) = 3;
  out.at(0, 0, 0, 1) = 4;
  out.at(0, 0, 1, 0) = 1;
  const ErrorMetrics m = compute_error(out, v, {two_rows()});
  EXPECT_EQ(m.rel_fro, 0.0);
  EXPECT_EQ(m.rel_uniform, 0.0);
  EXPECT_DOUBLE_EQ(m.cos_min, 1.0);
}

TEST(Metrics, NonFiniteOutputIsCountedAndPoisonsTheError) {
  Tensor4 out(1, 1, 2, 2), v(1, 1, 4, 2);
  out.at(0, 0, 1, 1) = NAN;
  const ErrorMetrics m = compute_error(out, v, {two_rows()});
  EXPECT_EQ(m.nonfinite, 1);
  EXPECT_TRUE(std::isinf(m.rel_fro));
}

TEST(Metrics, FullyMaskedRowsAreExcludedAndChecked) {
  HeadReference r = two_rows();
  r.allowed[1] = 0;
  r.out.row(1).setZero();
  Tensor4 out(1, 1, 2, 2), v(1, 1, 4, 2);
  out.at(0, 0, 0, 0) = 3;
  out.at(0, 0, 0, 1) = 4;
  out.at(0, 0, 1, 0) = 0.5;  // must have been 0
  const ErrorMetrics m = compute_error(out, v, {r});
  EXPECT_EQ(m.rows_compared, 1);
  EXPECT_EQ(m.rows_fully_masked, 1);
  EXPECT_DOUBLE_EQ(m.masked_rows_max_abs, 0.5);
  EXPECT_EQ(m.rel_fro, 0.0);
}

TEST(Metrics, GaussianAttentionIsNearlyUniform) {
  // reference/variants.md §8: Gaussian q, k with scale 1/sqrt(d) give n_eff/n near 1/e and
  // entropy/log n near 0.93 at n = 1024; the exact statistics must reproduce this.
  const Problem p = testing::make_problem(256, 1024, 64, 8, 1, 1);
  const auto in = testing::make_inputs(p, 21);
  const auto ref =
      reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax, all_rows(p.n_q));
  const ErrorMetrics m = compute_error(Tensor4(1, 1, 256, 8), in.v, ref);
  EXPECT_NEAR(m.n_eff_ratio, std::exp(-1.0), 0.05);
  EXPECT_NEAR(m.entropy_ratio, 1.0 - 0.5 / std::log(1024.0), 0.02);
}

}  // namespace
}  // namespace attnbench
