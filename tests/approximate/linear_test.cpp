// Linear attention (elu + 1 kernel): the variant's chunked/parallel form equals the recurrent
// form (state S_t, z_t updated key by key) and the quadratic form (normalised phi(Q) phi(K)^T V),
// both computed here in double, causal and not, with padding and n_q != n_k.
#include <gtest/gtest.h>

#include "tests/testing/test_util.h"
#include "variants/approximate/feature_maps.h"

namespace attnbench {
namespace {

using testing::make_inputs;
using testing::make_problem;

constexpr double kEpsilon = 1e-6;

RowMatrixD elu1(const Eigen::Map<const RowMatrix>& x) {
  RowMatrixD out = x.cast<double>();
  for (Index i = 0; i < out.size(); ++i) {
    double& e = out.data()[i];
    e = e > 0 ? e + 1 : std::exp(e);
  }
  return out;
}

bool visible(const Problem& p, const testing::Inputs& in, Index b, Index i, Index j) {
  return p.allowed(i, j) && in.mask.valid(b, j);
}

// Normalised phi(Q) phi(K)^T V over the allowed pairs, one (b, h) slice.
RowMatrixD quadratic_form(const Problem& p, const testing::Inputs& in, Index b, Index h) {
  const RowMatrixD fq = elu1(in.q.head(b, h)), fk = elu1(in.k.head(b, h));
  const RowMatrixD v = in.v.head(b, h).cast<double>();
  RowMatrixD out = RowMatrixD::Zero(p.n_q, p.d_v);
  for (Index i = 0; i < p.n_q; ++i) {
    double den = kEpsilon;
    for (Index j = 0; j < p.n_k; ++j) {
      if (!visible(p, in, b, i, j)) continue;
      const double wij = fq.row(i).dot(fk.row(j));
      out.row(i) += wij * v.row(j);
      den += wij;
    }
    out.row(i) /= den;
  }
  return out;
}

// The recurrent form: S_t = S_{t-1} + phi(k_t) v_t^T, z_t = z_{t-1} + phi(k_t); row i reads the
// state after the last key it may see (all keys when not causal).
RowMatrixD recurrent_form(const Problem& p, const testing::Inputs& in, Index b, Index h) {
  const RowMatrixD fq = elu1(in.q.head(b, h)), fk = elu1(in.k.head(b, h));
  const RowMatrixD v = in.v.head(b, h).cast<double>();
  RowMatrixD out = RowMatrixD::Zero(p.n_q, p.d_v);
  RowMatrixD s = RowMatrixD::Zero(p.d, p.d_v);
  Eigen::VectorXd z = Eigen::VectorXd::Zero(p.d);
  Index next = 0;  // keys [0, next) are in the state
  for (Index i = 0; i < p.n_q; ++i) {
    const Index last = p.causal ? std::min(p.causal_last_key(i), p.n_k - 1) : p.n_k - 1;
    for (; next <= last; ++next) {
      if (!in.mask.valid(b, next)) continue;
      s += fk.row(next).transpose() * v.row(next);
      z += fk.row(next).transpose();
    }
    out.row(i) = fq.row(i) * s / (fq.row(i).dot(z) + kEpsilon);
  }
  return out;
}

struct Case {
  Index n_q, n_k, d, d_v, batch;
  bool causal, padding;
};

class LinearForms : public ::testing::TestWithParam<Case> {};

TEST_P(LinearForms, ParallelRecurrentAndQuadraticAgree) {
  const Case c = GetParam();
  const Problem p = make_problem(c.n_q, c.n_k, c.d, c.d_v, c.batch, 2, c.causal, c.padding);
  const auto in = make_inputs(p, 11 + c.n_q);
  const Tensor4 out = testing::run_variant("linear", {{"epsilon", kEpsilon}}, p, in);
  double max_v = 0;
  for (float x : in.v.storage()) max_v = std::max(max_v, double(std::fabs(x)));
  // Outputs are convex combinations of V; the float path rounds features (a few eps), sums of
  // n_k terms (eps log2 n_k, blocked) and dot products of length d (eps d).
  const double tol = 8.0 * testing::kFloatEps * (c.d + std::log2(double(c.n_k)) + 4) * max_v;
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      const RowMatrixD quad = quadratic_form(p, in, b, h);
      const RowMatrixD rec = recurrent_form(p, in, b, h);
      EXPECT_LE((quad - rec).cwiseAbs().maxCoeff(), 1e-9 * max_v) << "b=" << b << " h=" << h;
      const double diff = (out.head(b, h).cast<double>() - quad).cwiseAbs().maxCoeff();
      EXPECT_LE(diff, tol) << "b=" << b << " h=" << h;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LinearForms,
    ::testing::Values(Case{1, 1, 4, 3, 1, false, false}, Case{300, 300, 16, 8, 1, false, false},
                      Case{300, 300, 16, 8, 1, true, false}, Case{200, 77, 8, 5, 2, true, true},
                      Case{77, 200, 8, 5, 2, true, true}, Case{130, 2600, 8, 4, 2, false, true},
                      Case{129, 129, 64, 64, 2, true, true}, Case{65, 64, 3, 7, 1, true, false}));

TEST(Linear, RejectsNegativeEpsilon) {
  const Problem p = make_problem(16, 16, 8, 8);
  try {
    make_attention("linear", p, {{"epsilon", -1.0}});
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("linear"), std::string::npos) << msg;
    EXPECT_NE(msg.find("epsilon"), std::string::npos) << msg;
    EXPECT_NE(msg.find("-1"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace attnbench
