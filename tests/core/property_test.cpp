// The property suite: every registered variant, without editing this file, must keep these
// promises (STYLE.md "Tests"). A variant may refuse a configuration it cannot honour, but only
// with std::invalid_argument naming itself; it may never crash or return non-finite values.
#include <gtest/gtest.h>

#include <tbb/task_arena.h>

#include "tests/testing/test_util.h"

namespace attnbench {
namespace {

using testing::all_finite;
using testing::make_inputs;
using testing::make_problem;
using testing::max_abs_diff;

class VariantProperties : public ::testing::TestWithParam<std::string> {
 protected:
  const VariantInfo& info() const { return Registry::instance().get(GetParam()); }
  // Causal-only patterns are exercised causally, the rest non-causally unless asked.
  bool default_causal() const { return !info().traits.non_causal; }

  Problem problem(Index n_q, Index n_k, Index d, Index d_v, Index batch = 1, Index heads = 2,
                  bool key_padding = false) const {
    return make_problem(n_q, n_k, d, d_v, batch, heads, default_causal(), key_padding);
  }

  // Runs the variant; returns false (and checks the message) when it refuses the problem.
  bool try_run(const Problem& p, const testing::Inputs& in, Tensor4& out,
               const Json& params = Json::object()) const {
    try {
      out = testing::run_variant(GetParam(), params, p, in);
      return true;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(GetParam()), std::string::npos)
          << "refusal must name the variant: " << e.what();
      return false;
    }
  }
};

TEST_P(VariantProperties, AcceptsCanonicalProblems) {
  for (Index n : {Index(256), Index(200)}) {
    const Problem p = problem(n, n, 64, 64);
    const auto in = make_inputs(p, 1);
    Tensor4 out;
    ASSERT_TRUE(try_run(p, in, out)) << GetParam() << " refused " << p.to_string();
    EXPECT_EQ(out.rows(), n);
    EXPECT_EQ(out.cols(), 64);
    EXPECT_TRUE(all_finite(out));
  }
}

TEST_P(VariantProperties, AwkwardSizesGiveFiniteOutputOrAClearRefusal) {
  for (Index n : {1, 2, 7, 63, 64, 65, 200}) {
    for (Index d : {1, 8, 64}) {
      const Problem p = problem(n, n, d, d == 1 ? 3 : d);
      const auto in = make_inputs(p, 2 + n + d);
      Tensor4 out;
      if (try_run(p, in, out)) {
        EXPECT_TRUE(all_finite(out)) << GetParam() << " " << p.to_string();
        EXPECT_EQ(out.rows(), n);
      }
    }
  }
  for (auto [n_q, n_k] : {std::pair<Index, Index>{65, 200}, {200, 65}}) {
    const Problem p = problem(n_q, n_k, 8, 8);
    const auto in = make_inputs(p, 3);
    Tensor4 out;
    if (try_run(p, in, out)) {
      EXPECT_TRUE(all_finite(out)) << GetParam() << " " << p.to_string();
    }
  }
}

TEST_P(VariantProperties, SameSeedSameOutput) {
  const Problem p = problem(200, 200, 16, 16);
  const auto in = make_inputs(p, 4);
  Tensor4 a, b;
  ASSERT_TRUE(try_run(p, in, a));
  ASSERT_TRUE(try_run(p, in, b));
  EXPECT_EQ(max_abs_diff(a, b), 0.0) << GetParam();
}

TEST_P(VariantProperties, OneAndTwoThreadsAgree) {
  const Problem p = problem(200, 200, 16, 16, 2, 3);
  const auto in = make_inputs(p, 5);
  Tensor4 one, two;
  bool ok1 = false, ok2 = false;
  tbb::task_arena(1).execute([&] { ok1 = try_run(p, in, one); });
  tbb::task_arena(2).execute([&] { ok2 = try_run(p, in, two); });
  ASSERT_TRUE(ok1 && ok2);
  if (info().traits.deterministic) {
    EXPECT_EQ(max_abs_diff(one, two), 0.0) << GetParam() << " is declared deterministic";
  } else {
    EXPECT_LE(max_abs_diff(one, two), 1e-4) << GetParam();
  }
}

TEST_P(VariantProperties, CausalOutputsIgnoreLaterKeysAndValues) {
  if (!info().traits.causal) GTEST_SKIP() << GetParam() << " has no causal form";
  const Index n = 200, t = 97;
  const Problem p = make_problem(n, n, 16, 16, 1, 2, /*causal=*/true);
  const auto in = make_inputs(p, 6);
  auto later = in;
  for (Index h = 0; h < p.heads; ++h) {
    for (Index j = t + 1; j < n; ++j) {
      later.v.head(0, h).row(j).array() += 3.0f;
      // Shared-QK variants build keys from queries; changing later keys must not matter to
      // plain-softmax variants at all.
      if (info().traits.reference == ReferenceKind::kSoftmax) {
        later.k.head(0, h).row(j).array() *= -2.0f;
      }
    }
  }
  Tensor4 a, b;
  ASSERT_TRUE(try_run(p, in, a));
  ASSERT_TRUE(try_run(p, later, b));
  for (Index h = 0; h < p.heads; ++h) {
    const double diff =
        (a.head(0, h).topRows(t + 1) - b.head(0, h).topRows(t + 1)).cwiseAbs().maxCoeff();
    EXPECT_LE(diff, 1e-5) << GetParam() << " head " << h << ": rows <= " << t
                          << " changed when keys/values after " << t << " changed";
  }
}

TEST_P(VariantProperties, ValuesOfOnesGiveOnes) {
  if (!info().traits.rows_sum_to_one) GTEST_SKIP() << GetParam() << " rows need not sum to 1";
  for (bool padded : {false, true}) {
    if (padded && !info().traits.key_padding) continue;
    const Problem p = problem(200, 200, 16, 8, 2, 2, padded);
    auto in = make_inputs(p, 7);
    std::fill(in.v.storage().begin(), in.v.storage().end(), 1.0f);
    Tensor4 out;
    ASSERT_TRUE(try_run(p, in, out));
    double worst = 0;
    for (float x : out.storage()) worst = std::max(worst, std::fabs(double(x) - 1.0));
    EXPECT_LE(worst, 1e-4) << GetParam() << (padded ? " (padded)" : "");
  }
}

TEST_P(VariantProperties, FullyMaskedRowsGiveZerosNotNaN) {
  if (!info().traits.key_padding) GTEST_SKIP() << GetParam() << " takes no key padding";
  const Problem p = problem(200, 200, 16, 8, 2, 2, true);
  auto in = make_inputs(p, 8);
  for (Index j = 0; j < p.n_k; ++j) in.mask.set(1, j, false);
  Tensor4 out;
  ASSERT_TRUE(try_run(p, in, out));
  EXPECT_TRUE(all_finite(out)) << GetParam();
  for (Index h = 0; h < p.heads; ++h) {
    EXPECT_EQ(out.head(1, h).cwiseAbs().maxCoeff(), 0.0) << GetParam();
    EXPECT_GT(out.head(0, h).cwiseAbs().maxCoeff(), 0.0) << GetParam();
  }
}

TEST_P(VariantProperties, ExactVariantsMatchTheReference) {
  if (!info().traits.exact) GTEST_SKIP() << GetParam() << " is approximate";
  for (bool causal : {false, true}) {
    if ((causal && !info().traits.causal) || (!causal && !info().traits.non_causal)) continue;
    const Problem p = make_problem(130, 130, 32, 16, 2, 2, causal, info().traits.key_padding);
    const auto in = make_inputs(p, 9);
    Tensor4 out;
    ASSERT_TRUE(try_run(p, in, out));
    const ErrorMetrics m = testing::error_vs_reference(out, p, in, info().traits.reference);
    EXPECT_LE(m.max_abs, testing::exact_tolerance(p, in)) << GetParam() << " causal=" << causal;
  }
}

TEST_P(VariantProperties, CostModelIsSane) {
  const Problem p = problem(1024, 1024, 64, 64, 1, 8);
  const ParamSet params = resolve_variant_params(GetParam(), Json::object());
  const Cost c = info().cost(p, params, 2);
  EXPECT_GT(c.flops, 0.0) << GetParam();
  EXPECT_GE(c.memory_bytes, 0.0) << GetParam();
  EXPECT_TRUE(std::isfinite(c.flops) && std::isfinite(c.memory_bytes)) << GetParam();
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(AllVariants, VariantProperties,
                         ::testing::ValuesIn(Registry::instance().names()), test_name);

}  // namespace
}  // namespace attnbench
