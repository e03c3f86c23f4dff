// Workloads: catalog and parameter validation, shapes at awkward sizes, seeding (per (seed, b, h),
// thread-count independent), each generator's defining property, and each workload's
// exact-attention statistics against the documented range that the theory of
// reference/variants.md §8 predicts.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <Eigen/QR>
#include <Eigen/SVD>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include "attention/metrics.h"
#include "attention/reference.h"
#include "harness/data/tensor_io.h"
#include "harness/data/workloads.h"
#include "tests/harness/data/test_files.h"
#include "tests/testing/test_util.h"

namespace attnbench {
namespace {

using testing::make_problem;

std::vector<std::string> generated_workloads() {
  std::vector<std::string> names;
  for (const auto& w : workload_catalog()) {
    if (w.name != "files") names.push_back(w.name);
  }
  return names;
}

bool offers(const std::string& workload, const std::string& param) {
  for (const auto& p : workload_info(workload).params) {
    if (p.name == param) return true;
  }
  return false;
}

AttentionInputs generate(const std::string& name, const Json& params, const Problem& p,
                         std::uint64_t seed = 7) {
  return generate_workload(name, resolve_workload_params(name, params), p, seed);
}

bool bitwise_equal(const Tensor4& a, const Tensor4& b) {
  return a.shape_string() == b.shape_string() && a.storage() == b.storage();
}

template <typename Fn>
void expect_invalid(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no std::invalid_argument; expected one mentioning '" << parts.front() << "'";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    for (const auto& part : parts) {
      EXPECT_NE(msg.find(part), std::string::npos) << "message: " << msg << "\nmissing: " << part;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Catalog and parameters

TEST(WorkloadCatalog, ListsEveryWorkloadWithDocumentedParameters) {
  std::vector<std::string> names;
  for (const auto& w : workload_catalog()) {
    names.push_back(w.name);
    EXPECT_FALSE(w.summary.empty()) << w.name;
    EXPECT_FALSE(w.expected_stats.empty()) << w.name;
    for (const auto& p : w.params) EXPECT_FALSE(p.doc.empty()) << w.name << "." << p.name;
    const Json j = describe_workload(w);
    EXPECT_EQ(j.at("name"), w.name);
    EXPECT_EQ(j.at("params").size(), w.params.size());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"gaussian", "clustered", "local_decay", "low_rank",
                                             "sink", "small_norm", "files"}));
  EXPECT_FALSE(workload_info("files").params_doc.empty());
  for (const auto& name : generated_workloads()) {
    EXPECT_TRUE(offers(name, "values")) << name;
    EXPECT_EQ(offers(name, "shared_qk"), name != "sink") << name;
  }
}

TEST(WorkloadCatalog, DocumentedRangesContainTheirTheoryAndCoverTheCoreStatistics) {
  for (const auto& name : generated_workloads()) {
    const WorkloadInfo& w = workload_info(name);
    std::set<std::string> stats;
    for (const auto& r : w.stat_ranges) {
      stats.insert(r.stat);
      EXPECT_LE(r.lo, r.theory) << name << " " << r.stat;
      EXPECT_LE(r.theory, r.hi) << name << " " << r.stat;
      EXPECT_LT(r.lo, r.hi) << name << " " << r.stat;
    }
    for (const char* s : {"entropy_ratio", "n_eff_ratio", "max_weight"}) {
      EXPECT_TRUE(stats.count(s)) << name << " documents no range for " << s;
    }
  }
}

TEST(WorkloadParams, BadParametersNameTheWorkloadAndParameter) {
  expect_invalid(
      [] {
        resolve_workload_params("gaussian", {{"tau", 1}});
      },
      {"workload 'gaussian'", "unknown parameter 'tau'", "temperature"});
  expect_invalid(
      [] {
        resolve_workload_params("gaussian", {{"temperature", -1}});
      },
      {"workload 'gaussian'", "'temperature'", "-1"});
  expect_invalid(
      [] {
        resolve_workload_params("clustered", {{"values", "ones"}});
      },
      {"'values'", "gaussian | random_walk | key_linear"});
  expect_invalid(
      [] {
        resolve_workload_params("sink", {{"shared_qk", true}});
      },
      {"workload 'sink'", "unknown parameter 'shared_qk'"});
  expect_invalid([] { resolve_workload_params("uniform", Json::object()); },
                 {"unknown workload 'uniform'", "gaussian", "files"});
  expect_invalid([] { workload_info("nope"); }, {"unknown workload 'nope'"});
}

TEST(WorkloadParams, ShapeDependentChecks) {
  const Problem p = make_problem(32, 48, 8, 8);
  for (const auto& name : generated_workloads()) {
    if (!offers(name, "shared_qk")) continue;
    expect_invalid(
        [&] {
          generate(name, {{"shared_qk", true}}, p);
        },
        {"workload '" + name + "'", "'shared_qk'", "n_q = n_k", "n_q=32"});
  }
  expect_invalid([&] { generate("low_rank", {{"rank", 9}}, p); }, {"'rank'", "at most d = 8"});
  expect_invalid(
      [&] {
        generate("low_rank", {{"segments", 33}}, p);
      },
      {"'segments'", "at most min(n_q, n_k) = 32"});
  expect_invalid([&] { generate("local_decay", Json::object(), make_problem(8, 8, 1, 1)); },
                 {"workload 'local_decay'", "d = 1", "d >= 2"});
}

// ---------------------------------------------------------------------------------------------
// Shapes and seeding

TEST(Workloads, ShapesAndFiniteValuesAtAwkwardSizes) {
  for (const auto& name : generated_workloads()) {
    for (const char* values : {"gaussian", "random_walk", "key_linear"}) {
      for (Index d : {1, 2, 7}) {
        if (name == "local_decay" && d < 2) continue;
        SCOPED_TRACE(name + " values=" + values + " d=" + std::to_string(d));
        const Problem p = make_problem(37, 53, d, 5, 2, 3);
        const AttentionInputs in = generate(name, {{"values", values}}, p);
        EXPECT_EQ(in.q.shape_string(), Tensor4(2, 3, 37, d).shape_string());
        EXPECT_EQ(in.k.shape_string(), Tensor4(2, 3, 53, d).shape_string());
        EXPECT_EQ(in.v.shape_string(), Tensor4(2, 3, 53, 5).shape_string());
        EXPECT_TRUE(in.mask.empty());
        EXPECT_TRUE(testing::all_finite(in.q));
        EXPECT_TRUE(testing::all_finite(in.k));
        EXPECT_TRUE(testing::all_finite(in.v));
      }
    }
  }
}

TEST(Workloads, SeededPerBatchEntryAndHead) {
  const Problem small = make_problem(40, 40, 8, 4, 2, 3);
  const Problem big = make_problem(40, 40, 8, 4, 3, 5);
  for (const auto& name : generated_workloads()) {
    SCOPED_TRACE(name);
    const AttentionInputs a = generate(name, Json::object(), small, 11);
    const AttentionInputs b = generate(name, Json::object(), small, 11);
    const AttentionInputs c = generate(name, Json::object(), small, 12);
    EXPECT_TRUE(bitwise_equal(a.q, b.q) && bitwise_equal(a.k, b.k) && bitwise_equal(a.v, b.v));
    EXPECT_FALSE(bitwise_equal(a.v, c.v));
    if (name != "local_decay") {
      EXPECT_FALSE(bitwise_equal(a.q, c.q));
    }
    // Head (b, h) depends on (seed, b, h) only, not on the problem's batch and head counts.
    const AttentionInputs g = generate(name, Json::object(), big, 11);
    for (Index bb = 0; bb < small.batch; ++bb) {
      for (Index h = 0; h < small.heads; ++h) {
        EXPECT_EQ(a.q.head(bb, h), g.q.head(bb, h));
        EXPECT_EQ(a.k.head(bb, h), g.k.head(bb, h));
        EXPECT_EQ(a.v.head(bb, h), g.v.head(bb, h));
      }
    }
    // Heads and batch entries differ from one another.
    EXPECT_NE(a.k.head(0, 0), a.k.head(0, 1));
    EXPECT_NE(a.k.head(0, 0), a.k.head(1, 0));
  }
}

TEST(Workloads, ThreadCountDoesNotChangeTheInputs) {
  const Problem p = make_problem(64, 64, 16, 8, 2, 4);
  for (const auto& name : generated_workloads()) {
    SCOPED_TRACE(name);
    AttentionInputs one, two;
    {
      tbb::global_control c(tbb::global_control::max_allowed_parallelism, 1);
      one = generate(name, {{"values", "key_linear"}}, p);
    }
    {
      tbb::global_control c(tbb::global_control::max_allowed_parallelism, 2);
      two = generate(name, {{"values", "key_linear"}}, p);
    }
    EXPECT_TRUE(bitwise_equal(one.q, two.q) && bitwise_equal(one.k, two.k) &&
                bitwise_equal(one.v, two.v));
  }
}

TEST(Workloads, SharedQkGivesKEqualToQ) {
  const Problem p = make_problem(48, 48, 8, 8, 1, 2);
  for (const auto& name : generated_workloads()) {
    if (!offers(name, "shared_qk")) continue;
    SCOPED_TRACE(name);
    const AttentionInputs in = generate(name, {{"shared_qk", true}}, p);
    EXPECT_TRUE(bitwise_equal(in.q, in.k));
  }
}

// ---------------------------------------------------------------------------------------------
// Exact-attention statistics

struct Measured {
  double entropy_ratio = 0, n_eff_ratio = 0, max_weight = 0, sink_weight = 0, mean_distance = 0;
  double get(const std::string& stat) const {
    if (stat == "entropy_ratio") return entropy_ratio;
    if (stat == "n_eff_ratio") return n_eff_ratio;
    if (stat == "max_weight") return max_weight;
    if (stat == "sink_weight") return sink_weight;
    if (stat == "mean_distance") return mean_distance;
    ADD_FAILURE() << "unknown statistic " << stat;
    return NAN;
  }
};

// Statistics of exact attention on the workload (non-causal, n_q = n_k = n, batch 1), from the
// double reference. V is replaced by the indicator of key 0, so the reference output is p_i0.
// The mean attended distance sum_j p_ij |i - j| is computed directly on every 4th row.
Measured measure(const std::string& name, const Json& params, Index n = kStatsN, Index d = kStatsD,
                 Index heads = 4, std::uint64_t seed = 1) {
  const Problem p = make_problem(n, n, d, d, 1, heads);
  const AttentionInputs in = generate(name, params, p, seed);
  Problem p1 = p;
  p1.d_v = 1;
  Tensor4 e0(1, heads, n, 1);
  for (Index h = 0; h < heads; ++h) e0.at(0, h, 0, 0) = 1.0f;
  const auto rows = all_rows(n);
  const auto ref =
      reference_attention(in.q, in.k, e0, KeyMask(), p1, ReferenceKind::kSoftmax, rows);
  const ErrorMetrics m = compute_error(Tensor4(1, heads, n, 1), e0, ref);
  Measured s;
  s.entropy_ratio = m.entropy_ratio;
  s.n_eff_ratio = m.n_eff_ratio;
  s.max_weight = m.max_weight;
  double sink = 0, dist = 0;
  Index dist_rows = 0;
  for (Index h = 0; h < heads; ++h) {
    for (Index t = 0; t < n; ++t) sink += ref[h].out(t, 0);
    const RowMatrixD q = in.q.head(0, h).cast<double>(), k = in.k.head(0, h).cast<double>();
    for (Index i = 0; i < n; i += 4) {
      const Eigen::VectorXd logits = k * q.row(i).transpose() / std::sqrt(double(d));
      const Eigen::ArrayXd w = (logits.array() - logits.maxCoeff()).exp();
      double num = 0;
      for (Index j = 0; j < n; ++j) num += w(j) * double(std::abs(i - j));
      dist += num / w.sum();
      ++dist_rows;
    }
  }
  s.sink_weight = sink / double(heads * n);
  s.mean_distance = dist / double(dist_rows);
  return s;
}

class WorkloadStats : public ::testing::TestWithParam<std::string> {};

TEST_P(WorkloadStats, DefaultsFallInTheDocumentedRange) {
  const WorkloadInfo& w = workload_info(GetParam());
  const Measured m = measure(w.name, Json::object());
  std::printf(
      "[stats] %-11s entropy/log n %.4f  n_eff/n %.4f  max weight %.4f  weight on key 0 "
      "%.4f  mean distance %.1f\n",
      w.name.c_str(), m.entropy_ratio, m.n_eff_ratio, m.max_weight, m.sink_weight, m.mean_distance);
  for (const auto& r : w.stat_ranges) {
    const double x = m.get(r.stat);
    RecordProperty(r.stat, std::to_string(x));
    EXPECT_GE(x, r.lo) << w.name << " " << r.stat << " (theory " << r.theory << ")";
    EXPECT_LE(x, r.hi) << w.name << " " << r.stat << " (theory " << r.theory << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Catalog, WorkloadStats, ::testing::ValuesIn(generated_workloads()),
                         [](const auto& info) { return info.param; });

// §8 item 1: the finite-n theory for τ = 2, 4, 8 (log-normal weights over 1024 keys whose
// logit variance is τ²|g|²/d), and monotone sharpening.
TEST(GaussianWorkload, TemperatureSharpensAsTheTheoryPredicts) {
  struct Case {
    double tau, n_eff_lo, n_eff_hi, max_lo, max_hi;
  };
  double last_neff = 1.0, last_max = 0.0;
  for (const Case& c : {Case{2, 0.045, 0.07, 0.09, 0.125}, Case{4, 0.0045, 0.009, 0.38, 0.46},
                        Case{8, 0.0016, 0.0029, 0.66, 0.76}}) {
    const Measured m = measure("gaussian", {{"temperature", c.tau}});
    std::printf("[stats] gaussian τ=%g: entropy/log n %.4f  n_eff/n %.4f  max weight %.4f\n", c.tau,
                m.entropy_ratio, m.n_eff_ratio, m.max_weight);
    EXPECT_GE(m.n_eff_ratio, c.n_eff_lo) << "tau " << c.tau;
    EXPECT_LE(m.n_eff_ratio, c.n_eff_hi) << "tau " << c.tau;
    EXPECT_GE(m.max_weight, c.max_lo) << "tau " << c.tau;
    EXPECT_LE(m.max_weight, c.max_hi) << "tau " << c.tau;
    EXPECT_LT(m.n_eff_ratio, last_neff);
    EXPECT_GT(m.max_weight, last_max);
    last_neff = m.n_eff_ratio;
    last_max = m.max_weight;
  }
}

// ---------------------------------------------------------------------------------------------
// Local decay

// The logits are exactly (α/F)·Σ_f cos(ω_f (pos_i − j)) with ω_f geometric from 2π/(4 n_k) to
// 2π/4 and the query at pos_i = i + n_k − n_q (bottom-right alignment).
TEST(LocalDecayWorkload, LogitsAreThePositionalKernel) {
  for (auto [n_q, n_k, d] :
       {std::tuple<Index, Index, Index>{100, 160, 16}, {64, 64, 9}, {50, 20, 4}, {8, 3, 2}}) {
    const double alpha = 5.0;
    const Problem p = make_problem(n_q, n_k, d, 3, 1, 2);
    const AttentionInputs in = generate("local_decay", {{"alpha", alpha}}, p);
    const Index features = d / 2;
    std::vector<double> omega(features);
    for (Index f = 0; f < features; ++f) {
      const double x = features == 1 ? 0.5 : double(f) / double(features - 1);
      omega[f] = 2.0 * std::numbers::pi / (4.0 * double(n_k)) * std::pow(double(n_k), x);
    }
    double worst = 0;
    for (Index h = 0; h < 2; ++h) {
      const RowMatrixD s = in.q.head(0, h).cast<double>() *
                           in.k.head(0, h).cast<double>().transpose() / std::sqrt(double(d));
      for (Index i = 0; i < n_q; ++i) {
        for (Index j = 0; j < n_k; ++j) {
          double kernel = 0;
          for (Index f = 0; f < features; ++f) {
            kernel += std::cos(omega[f] * double(i + n_k - n_q - j));
          }
          worst = std::max(worst, std::fabs(s(i, j) - alpha / double(features) * kernel));
        }
      }
    }
    // Float rounding of q and k entries (|entry| <= c, relative error 2^-24) over 2F terms.
    EXPECT_LT(worst, 8.0 * alpha * testing::kFloatEps) << n_q << "x" << n_k << " d=" << d;
  }
}

// α sets the sharpness: n_eff/n falls as α grows, at the values the kernel predicts (the
// softmax of (α/F)·Σ cos(ω_f δ) over δ, evaluated in double independently of the generator).
TEST(LocalDecayWorkload, SharpnessFollowsAlpha) {
  struct Case {
    double alpha, n_eff;
  };
  double last = 1.0;
  for (const Case& c : {Case{1, 0.966}, Case{2, 0.838}, Case{4, 0.314}, Case{16, 0.00203}}) {
    const Measured m = measure("local_decay", {{"alpha", c.alpha}}, kStatsN, kStatsD, 1);
    EXPECT_NEAR(m.n_eff_ratio, c.n_eff, 0.05 * c.n_eff) << "alpha " << c.alpha;
    EXPECT_LT(m.n_eff_ratio, last);
    last = m.n_eff_ratio;
  }
}

// ---------------------------------------------------------------------------------------------
// Clustered, low-rank, sink, small-norm

TEST(ClusteredWorkload, QueriesAndKeysShareTheCentres) {
  // σ = 0: every row is a·μ_c for one of the C shared centres.
  const Problem p = make_problem(300, 200, 8, 4, 1, 2);
  const AttentionInputs in = generate("clustered", {{"clusters", 5}, {"sigma", 0.0}}, p);
  for (Index h = 0; h < 2; ++h) {
    std::set<std::vector<float>> qrows, krows;
    for (Index i = 0; i < p.n_q; ++i) {
      qrows.insert(
          std::vector<float>(in.q.head_data(0, h) + i * 8, in.q.head_data(0, h) + i * 8 + 8));
    }
    for (Index j = 0; j < p.n_k; ++j) {
      krows.insert(
          std::vector<float>(in.k.head_data(0, h) + j * 8, in.k.head_data(0, h) + j * 8 + 8));
    }
    EXPECT_EQ(qrows.size(), 5u);
    EXPECT_EQ(krows, qrows);
  }
}

TEST(LowRankWorkload, PiecewiseConstantOnSegmentsAtZeroNoise) {
  const Problem p = make_problem(64, 96, 8, 4, 1, 2);
  const AttentionInputs in = generate("low_rank", {{"segments", 8}}, p);
  for (Index h = 0; h < 2; ++h) {
    for (const auto& [t, n] : {std::pair{&in.q, p.n_q}, std::pair{&in.k, p.n_k}}) {
      const auto x = t->head(0, h);
      for (Index i = 1; i < n; ++i) {
        const bool same_segment = (i * 8 / n) == ((i - 1) * 8 / n);
        EXPECT_EQ(x.row(i) == x.row(i - 1), same_segment) << "row " << i << " of " << n;
      }
    }
  }
  // Noise makes every row distinct.
  const AttentionInputs noisy = generate("low_rank", {{"segments", 8}, {"noise", 0.1}}, p);
  EXPECT_NE(noisy.q.head(0, 0).row(0), noisy.q.head(0, 0).row(1));
}

TEST(LowRankWorkload, LogitRankIsAtMostR) {
  const Problem p = make_problem(96, 80, 16, 4, 1, 1);
  for (Index rank : {1, 3, 0}) {
    const AttentionInputs in = generate("low_rank", {{"segments", 0}, {"rank", rank}}, p);
    const RowMatrixD s =
        in.q.head(0, 0).cast<double>() * in.k.head(0, 0).cast<double>().transpose();
    const Eigen::VectorXd sv = Eigen::JacobiSVD<Eigen::MatrixXd>(s).singularValues();
    const Index r = rank == 0 ? 16 : rank;
    EXPECT_GT(sv(r - 1) / sv(0), 1e-3) << "rank " << rank;
    if (r < 16) {
      EXPECT_LT(sv(r) / sv(0), 1e-5) << "rank " << rank;
    }
  }
}

TEST(LowRankWorkload, RankKeepsTheLogitScaleAtTemperature) {
  // <q, k>/√d = τ·<a, a'>/√r has standard deviation τ whatever the rank.
  const Problem p = make_problem(256, 256, 64, 4, 1, 4);
  for (Index rank : {2, 8, 0}) {
    const AttentionInputs in =
        generate("low_rank", {{"segments", 0}, {"rank", rank}, {"temperature", 2.0}}, p);
    double sum2 = 0;
    for (Index h = 0; h < 4; ++h) {
      const RowMatrixD s =
          in.q.head(0, h).cast<double>() * in.k.head(0, h).cast<double>().transpose() / 8.0;
      sum2 += s.squaredNorm();
    }
    EXPECT_NEAR(std::sqrt(sum2 / (4.0 * 256 * 256)), 2.0, 0.3) << "rank " << rank;
  }
}

TEST(SinkWorkload, SinkKeyIsLargeAndAlignedWithTheQueries) {
  const Index d = 32;
  const Problem p = make_problem(512, 300, d, 4, 1, 2);
  const AttentionInputs in = generate("sink", {{"beta", 3.0}, {"gamma", 4.0}}, p);
  for (Index h = 0; h < 2; ++h) {
    const Eigen::VectorXd k0 = in.k.head(0, h).row(0).transpose().cast<double>();
    EXPECT_NEAR(k0.norm(), 4.0 * std::sqrt(double(d)), 1e-4 * k0.norm());
    // The mean query is β·u plus noise of norm about √(d/n).
    const Eigen::VectorXd mean_q = in.q.head(0, h).cast<double>().colwise().mean().transpose();
    EXPECT_GT(mean_q.dot(k0) / (mean_q.norm() * k0.norm()), 0.95);
    EXPECT_NEAR(mean_q.dot(k0) / k0.norm(), 3.0, 0.5);
    // Other keys are plain Gaussian (norm about √d).
    EXPECT_LT(in.k.head(0, h).row(1).norm(), 2.0 * std::sqrt(double(d)));
  }
}

TEST(SmallNormWorkload, EveryRowHasTheRequestedNorm) {
  const Index d = 48;
  const Problem p = make_problem(70, 90, d, 4, 2, 2);
  for (double rho : {0.25, 1.0}) {
    const AttentionInputs in = generate("small_norm", {{"rho", rho}}, p);
    for (const Tensor4* t : {&in.q, &in.k}) {
      for (Index b = 0; b < 2; ++b) {
        for (Index h = 0; h < 2; ++h) {
          const auto x = t->head(b, h).cast<double>();
          for (Index i = 0; i < x.rows(); ++i) {
            EXPECT_NEAR(x.row(i).squaredNorm() / std::sqrt(double(d)), rho, 1e-5 * rho);
          }
        }
      }
    }
  }
}

TEST(WorkloadValues, StructuredValues) {
  const Problem p = make_problem(64, 1024, 16, 8, 1, 2);
  auto rms = [](const auto& x) { return std::sqrt(x.squaredNorm() / double(x.size())); };
  {
    const AttentionInputs in = generate("gaussian", {{"values", "random_walk"}}, p);
    const RowMatrixD v = in.v.head(0, 1).cast<double>();
    EXPECT_NEAR(rms(v), 1.0, 1e-5);
    const RowMatrixD steps = v.bottomRows(p.n_k - 1) - v.topRows(p.n_k - 1);
    EXPECT_LT(rms(steps), 0.15);  // about sqrt(2/n) for a walk rescaled to unit RMS
    const AttentionInputs g = generate("gaussian", Json::object(), p);
    const RowMatrixD gv = g.v.head(0, 1).cast<double>();
    EXPECT_GT(rms(RowMatrixD(gv.bottomRows(p.n_k - 1) - gv.topRows(p.n_k - 1))), 1.2);
  }
  {
    const AttentionInputs in = generate("clustered", {{"values", "key_linear"}}, p);
    const RowMatrixD v = in.v.head(0, 0).cast<double>(), k = in.k.head(0, 0).cast<double>();
    EXPECT_NEAR(rms(v), 1.0, 1e-5);
    // V = K·W: least squares recovers it with a residual at float rounding.
    const Eigen::MatrixXd w = k.colPivHouseholderQr().solve(Eigen::MatrixXd(v));
    EXPECT_LT((k * w - v).norm() / v.norm(), 1e-5);
  }
}

// ---------------------------------------------------------------------------------------------
// Files

TEST(FilesWorkload, LoadsTheFilesAndChecksTheirShapes) {
  testing::TempDir dir;
  const Tensor4 q = testing::random_tensor(1, 2, 5, 4, 1),
                k = testing::random_tensor(1, 2, 7, 4, 2),
                v = testing::random_tensor(1, 2, 7, 3, 3);
  write_tensor_file(dir.path("q.npy"), q, {2, 5, 4});
  write_tensor_file(dir.path("k.npy"), k, {1, 2, 7, 4}, "float64");
  write_tensor_file(dir.path("v.safetensors"), v, {2, 7, 3}, "float32", "v");
  const Json params = {
      {"q", dir.path("q.npy")}, {"k", dir.path("k.npy")}, {"v", dir.path("v.safetensors:v")}};
  const ParamSet ps = resolve_workload_params("files", params);
  const Problem p = files_problem(ps);
  EXPECT_EQ(p.to_string(), make_problem(5, 7, 4, 3, 1, 2).to_string());
  const AttentionInputs in = generate_workload("files", ps, p, 0);
  EXPECT_TRUE(bitwise_equal(in.q, q) && bitwise_equal(in.k, k) && bitwise_equal(in.v, v));

  expect_invalid([&] { generate_workload("files", ps, make_problem(6, 7, 4, 3, 1, 2), 0); },
                 {"workload 'files'", "q file", "q.npy", "[1, 2, 5, 4]", "expected [1, 2, 6, 4]"});
  write_tensor_file(dir.path("k3.npy"), testing::random_tensor(1, 2, 7, 3, 2), {2, 7, 3});
  try {
    files_problem(resolve_workload_params(
        "files",
        {{"q", dir.path("q.npy")}, {"k", dir.path("k3.npy")}, {"v", dir.path("v.safetensors")}}));
    ADD_FAILURE() << "no error for q and k of different d";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("different d"), std::string::npos) << e.what();
  }
  EXPECT_THROW(files_problem(resolve_workload_params(
                   "files", {{"q", dir.path("none.npy")}, {"k", "k.npy"}, {"v", "v.npy"}})),
               std::runtime_error);
}

TEST(FilesWorkload, ParametersAreThreePaths) {
  expect_invalid(
      [] {
        resolve_workload_params("files", {{"q", "q.npy"}, {"k", "k.npy"}});
      },
      {"workload 'files'", "'v' is missing"});
  expect_invalid(
      [] {
        resolve_workload_params("files", {{"q", "a"}, {"k", "b"}, {"v", "c"}, {"o", "d"}});
      },
      {"unknown parameter 'o'", "q, k, v"});
  expect_invalid(
      [] {
        resolve_workload_params("files", {{"q", 1}, {"k", "b"}, {"v", "c"}});
      },
      {"'q' = 1", "file path"});
  expect_invalid([] { resolve_workload_params("files", "q.npy"); }, {"JSON object"});
}

}  // namespace
}  // namespace attnbench
