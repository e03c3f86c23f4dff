// `reformer` and `reformer_qk` (reference/variants.md §4.3): exact limits, the union-of-buckets
// property of the count correction, every mode against a brute force built from the public
// layout, hash invariances, the sort, causal non-leakage, error vs rounds on clustered inputs,
// parameter errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "attention/random.h"
#include "tests/testing/test_util.h"
#include "variants/lsh/lsh.h"

namespace attnbench {
namespace {

using testing::all_finite;
using testing::error_vs_reference;
using testing::kFloatEps;
using testing::make_inputs;
using testing::make_problem;
using testing::max_abs_diff;
using testing::run_variant;

bool shared_of(const std::string& variant) { return variant == "reformer"; }

ReferenceKind kind_of(const std::string& variant) {
  return shared_of(variant) ? ReferenceKind::kSharedQkSoftmax : ReferenceKind::kSoftmax;
}

lsh::Config config_of(const std::string& variant, const Problem& p, const Json& params) {
  return lsh::make_config(p, resolve_variant_params(variant, params), shared_of(variant));
}

// Tolerance on max |O' - O| for a float computation that is exact in exact arithmetic: logit
// rounding (eps sqrt(d) |logit|, amplified by exp), sum rounding, the round combination, times
// max |V|. Shared QK keys have norm 1.
double tolerance(const std::string& variant, const Problem& p, const testing::Inputs& in) {
  double max_q = 0, max_k = 0, max_v = 0;
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      max_q = std::max<double>(max_q, in.q.head(b, h).rowwise().norm().maxCoeff());
      max_k = std::max<double>(max_k, in.k.head(b, h).rowwise().norm().maxCoeff());
    }
  }
  if (shared_of(variant)) max_k = 1.0;
  for (float x : in.v.storage()) max_v = std::max<double>(max_v, std::fabs(x));
  const double logit = p.effective_scale() * max_q * max_k;
  return 8.0 * kFloatEps *
         (std::sqrt(double(p.d)) * (1.0 + logit) + std::log2(double(p.n_k)) + 4.0) *
         std::max(1.0, max_v);
}

// The variant's output recomputed in double from the public layout: for each row, every
// occurrence of a visible key in every round (padding, causal and, for shared QK, self
// excluded) with logit s_ij - log cnt_ij under the count correction (log(cnt + 1e-9) with global
// look-back, as the reference codes), one softmax over all occurrences (what per-round
// log-sum-exp combination amounts to), and self alone when nothing else is visible.
RowMatrixD brute_force_head(const lsh::Layout& lay, ConstMatRef q, ConstMatRef k, ConstMatRef v,
                            std::span<const std::uint8_t> valid, const Problem& p) {
  const lsh::Config& cfg = lay.cfg;
  const Index n = cfg.n;
  const double scale = p.effective_scale();
  RowMatrixD keys = (cfg.shared_qk ? q : k).cast<double>();
  if (cfg.shared_qk) {
    for (Index j = 0; j < n; ++j) {
      const double norm = keys.row(j).norm();
      if (norm > 0) keys.row(j) /= norm;
    }
  }
  RowMatrixD out = RowMatrixD::Zero(n, v.cols());
  for (Index i = 0; i < n; ++i) {
    std::vector<std::pair<Index, double>> logits;
    for (Index r = 0; r < cfg.n_hashes; ++r) {
      for (Index j : lay.visible_keys(r, i)) {
        if (!(valid.empty() || valid[j])) continue;
        if (cfg.causal && j > i) continue;
        if (cfg.shared_qk && j == i) continue;
        double s = scale * q.row(i).cast<double>().dot(keys.row(j));
        if (cfg.dup_correction) {
          const double cnt = double(lay.pair_count(i, j));
          s -= cfg.global_lookback ? std::log(cnt + 1e-9) : std::log(cnt);
        }
        logits.emplace_back(j, s);
      }
    }
    if (logits.empty()) {
      if (cfg.shared_qk && (valid.empty() || valid[i])) out.row(i) = v.row(i).cast<double>();
      continue;
    }
    double m = -std::numeric_limits<double>::infinity();
    for (const auto& [j, s] : logits) m = std::max(m, s);
    double z = 0;
    for (const auto& [j, s] : logits) {
      const double e = std::exp(s - m);
      z += e;
      out.row(i) += e * v.row(j).cast<double>();
    }
    out.row(i) /= z;
  }
  return out;
}

double max_diff_to_brute_force(const std::string& variant, const Json& params, const Problem& p,
                               const testing::Inputs& in) {
  const Tensor4 out = run_variant(variant, params, p, in);
  const lsh::Config cfg = config_of(variant, p, params);
  double worst = 0;
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      const lsh::Layout lay = lsh::make_layout(in.q.head(b, h), in.k.head(b, h), cfg, h);
      const RowMatrixD expect = brute_force_head(lay, in.q.head(b, h), in.k.head(b, h),
                                                 in.v.head(b, h), in.mask.row(b), p);
      worst = std::max(worst, (out.head(b, h).cast<double>() - expect).cwiseAbs().maxCoeff());
    }
  }
  return worst;
}

// Output vs the variant's exact reference (shared-QK or plain softmax).
double max_error_vs_exact(const std::string& variant, const Json& params, const Problem& p,
                          const testing::Inputs& in) {
  const Tensor4 out = run_variant(variant, params, p, in);
  EXPECT_TRUE(all_finite(out));
  return error_vs_reference(out, p, in, kind_of(variant)).max_abs;
}

// ---------------------------------------------------------------------------------------------
// Exact limits

TEST(Reformer, OneRoundTwoChunksEqualsSharedQkReference) {
  for (bool causal : {false, true}) {
    for (auto [n, chunk] : {std::pair<Index, Index>{256, 128}, {200, 100}, {130, 65}}) {
      const Problem p = make_problem(n, n, 32, 16, 2, 2, causal);
      const auto in = make_inputs(p, 11 + n);
      const Json params = {{"n_hashes", 1}, {"chunk", chunk}};
      EXPECT_LE(max_error_vs_exact("reformer", params, p, in), tolerance("reformer", p, in))
          << "n=" << n << " causal=" << causal;
    }
  }
}

TEST(Reformer, TwoChunksSeveralRoundsPerRoundLookbackIsExact) {
  for (bool causal : {false, true}) {
    for (Index hashes : {2, 4}) {
      for (bool dup : {true, false}) {
        const Problem p = make_problem(256, 256, 32, 16, 1, 2, causal, /*key_padding=*/true);
        const auto in = make_inputs(p, 21 + hashes);
        const Json params = {{"n_hashes", hashes}, {"chunk", 128}, {"dup_correction", dup}};
        EXPECT_LE(max_error_vs_exact("reformer", params, p, in), tolerance("reformer", p, in))
            << "H=" << hashes << " causal=" << causal << " dup=" << dup;
      }
    }
  }
}

TEST(Reformer, VisibleChunksCoveringTheRoundIsExact) {
  // n_before >= n/c - 1 (trax-style), or before + after covering every chunk.
  const Problem p = make_problem(256, 256, 16, 8, 1, 2, false, true);
  const auto in = make_inputs(p, 31);
  for (auto [before, after] : {std::pair<int, int>{7, 0}, {3, 4}, {20, 0}}) {
    const Json params = {
        {"n_hashes", 3}, {"chunk", 32}, {"chunks_before", before}, {"chunks_after", after}};
    EXPECT_LE(max_error_vs_exact("reformer", params, p, in), tolerance("reformer", p, in))
        << "before=" << before << " after=" << after;
  }
}

TEST(Reformer, ChunkEqualToNIsExact) {
  const Problem p = make_problem(100, 100, 16, 8, 1, 1, true);
  const auto in = make_inputs(p, 32);
  EXPECT_LE(max_error_vs_exact("reformer", {{"chunk", 100}}, p, in), tolerance("reformer", p, in));
}

TEST(ReformerQk, OneRoundTwoChunksEqualsSoftmax) {
  const Problem p = make_problem(256, 256, 32, 16, 2, 2, false, true);
  const auto in = make_inputs(p, 41);
  for (Index hashes : {1, 3}) {
    const Json params = {{"n_hashes", hashes}, {"chunk", 128}};
    EXPECT_LE(max_error_vs_exact("reformer_qk", params, p, in), tolerance("reformer_qk", p, in));
  }
}

// With global look-back (the reference codes) the two-chunk limit is not exact for H > 1: the
// first chunk of a round sees the last chunk of the previous round instead of its own round's.
TEST(Reformer, GlobalLookbackLeaksAcrossRounds) {
  const Problem p = make_problem(256, 256, 32, 16, 1, 2, false);
  const auto in = make_inputs(p, 51, /*temperature=*/3.0);
  const Json compat = {
      {"n_hashes", 4}, {"chunk", 128}, {"compat_global_lookback", true}, {"dup_correction", false}};
  const Tensor4 out = run_variant("reformer", compat, p, in);
  const ErrorMetrics m = error_vs_reference(out, p, in, ReferenceKind::kSharedQkSoftmax);
  EXPECT_GT(m.rel_fro, 1e-3) << "global look-back should differ from exact here";
  // With one round, global and per-round look-back are the same thing.
  const Json one = {{"n_hashes", 1}, {"chunk", 32}};
  Json one_compat = one;
  one_compat["compat_global_lookback"] = true;
  EXPECT_EQ(
      max_abs_diff(run_variant("reformer", one, p, in), run_variant("reformer", one_compat, p, in)),
      0.0);
}

// ---------------------------------------------------------------------------------------------
// Semantics of every mode

// With the count correction the output is exact softmax over the union of the keys seen in any
// round: built from the variant's hashes through the public layout, then the reference with an
// element mask.
void expect_union_property(const std::string& variant, bool causal, Index hashes,
                           std::uint64_t seed) {
  const Problem p = make_problem(256, 256, 16, 8, 2, 2, causal, /*key_padding=*/true);
  const auto in = make_inputs(p, seed);
  const Json params = {{"n_hashes", hashes}, {"chunk", 32}, {"seed", seed}};
  const lsh::Config cfg = config_of(variant, p, params);
  const Index n = p.n_q;
  std::vector<std::vector<std::uint8_t>> in_union(p.batch * p.heads,
                                                  std::vector<std::uint8_t>(n * n, 0));
  Index union_size = 0;
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      const lsh::Layout lay = lsh::make_layout(in.q.head(b, h), in.k.head(b, h), cfg, h);
      for (Index i = 0; i < n; ++i) {
        for (Index r = 0; r < hashes; ++r) {
          for (Index j : lay.visible_keys(r, i)) {
            union_size += !in_union[b * p.heads + h][i * n + j];
            in_union[b * p.heads + h][i * n + j] = 1;
          }
        }
      }
    }
  }
  // The test is only meaningful when the union is a strict subset.
  ASSERT_LT(union_size, p.batch * p.heads * n * n);
  const ElementMask mask = [&](Index bh, Index i, Index j) { return in_union[bh][i * n + j] != 0; };
  const Tensor4 out = run_variant(variant, params, p, in);
  const auto ref =
      reference_attention(in.q, in.k, in.v, in.mask, p, kind_of(variant), all_rows(n), mask);
  const ErrorMetrics m = compute_error(out, in.v, ref);
  EXPECT_EQ(m.nonfinite, 0);
  EXPECT_LE(m.max_abs, tolerance(variant, p, in))
      << variant << " H=" << hashes << " causal=" << causal;
}

TEST(Reformer, CountCorrectionGivesSoftmaxOverTheUnionOfBuckets) {
  for (Index hashes : {1, 2, 4}) {
    for (bool causal : {false, true})
      expect_union_property("reformer", causal, hashes, 60 + hashes);
  }
}

TEST(ReformerQk, CountCorrectionGivesSoftmaxOverTheUnionOfBuckets) {
  for (Index hashes : {1, 2, 4}) expect_union_property("reformer_qk", false, hashes, 70 + hashes);
}

// Every combination of the count correction, the look-back scope and chunks before/after,
// against the brute force (this also pins down the reference codes' behaviour reproduced by the
// compat flag: cross-round pairs with count 0 get -log(1e-9)).
TEST(Reformer, EveryModeMatchesTheBruteForce) {
  for (bool causal : {false, true}) {
    const Problem p = make_problem(192, 192, 16, 8, 1, 2, causal, true);
    const auto in = make_inputs(p, 81 + causal);
    for (bool dup : {true, false}) {
      for (bool global : {false, true}) {
        for (auto [before, after] : {std::pair<int, int>{1, 0}, {2, 1}}) {
          const Json params = {{"n_hashes", 3},
                               {"chunk", 16},
                               {"dup_correction", dup},
                               {"compat_global_lookback", global},
                               {"chunks_before", before},
                               {"chunks_after", after},
                               {"seed", 5}};
          // -log(1e-9) = 20.7 makes such pairs dominate their row: allow for the larger logits.
          const double tol = tolerance("reformer", p, in) * (global && dup ? 64.0 : 1.0);
          EXPECT_LE(max_diff_to_brute_force("reformer", params, p, in), tol)
              << params.dump() << " causal=" << causal;
        }
      }
    }
  }
}

TEST(Reformer, ManyRoundsMatchTheBruteForce) {
  // Counts above 7 take another code path than small ones.
  const Problem p = make_problem(160, 160, 16, 8, 1, 1, true);
  const auto in = make_inputs(p, 88);
  for (bool global : {false, true}) {
    const Json params = {{"n_hashes", 10}, {"chunk", 16}, {"compat_global_lookback", global}};
    const double tol = tolerance("reformer", p, in) * (global ? 64.0 : 1.0);
    EXPECT_LE(max_diff_to_brute_force("reformer", params, p, in), tol) << params.dump();
  }
}

TEST(ReformerQk, EveryModeMatchesTheBruteForce) {
  const Problem p = make_problem(160, 160, 16, 8, 2, 2, false, true);
  const auto in = make_inputs(p, 91);
  for (bool dup : {true, false}) {
    for (bool global : {false, true}) {
      const Json params = {{"n_hashes", 3},
                           {"chunk", 16},
                           {"dup_correction", dup},
                           {"compat_global_lookback", global},
                           {"chunks_after", 1}};
      const double tol = tolerance("reformer_qk", p, in) * (global && dup ? 64.0 : 1.0);
      EXPECT_LE(max_diff_to_brute_force("reformer_qk", params, p, in), tol) << params.dump();
    }
  }
}

TEST(Reformer, FactorisedBucketsAndPaddedLengthMatchTheBruteForce) {
  // n = 1000 with chunk 8: 125 chunks (n padded to 1000), 250 buckets -> 16 x 14 = 224 buckets.
  const Problem p = make_problem(1000, 1000, 8, 4, 1, 1, true);
  const auto in = make_inputs(p, 95);
  const Json params = {{"n_hashes", 2}, {"chunk", 8}};
  const lsh::Config cfg = config_of("reformer", p, params);
  ASSERT_EQ(cfg.buckets.factors.size(), 2u);
  EXPECT_LE(max_diff_to_brute_force("reformer", params, p, in), tolerance("reformer", p, in));
  // A length that is not a multiple of the chunk: dummies are excluded.
  const Problem q = make_problem(203, 203, 8, 4, 1, 2, false, true);
  const auto inq = make_inputs(q, 96);
  EXPECT_LE(max_diff_to_brute_force("reformer", {{"chunk", 16}}, q, inq),
            tolerance("reformer", q, inq));
}

TEST(Reformer, RowsWithOnlyThemselvesAttendToThemselves) {
  // Causal row 0 sees only itself. With chunk 1 a query sees itself and its sorted
  // predecessor, which is often later (masked): such rows must output their own value.
  const Problem p = make_problem(64, 64, 8, 4, 1, 1, true);
  const auto in = make_inputs(p, 97);
  const Tensor4 out = run_variant("reformer", {{"chunk", 1}, {"n_hashes", 1}}, p, in);
  EXPECT_NEAR(out.at(0, 0, 0, 0), in.v.at(0, 0, 0, 0), 1e-6);
  EXPECT_LE(max_diff_to_brute_force("reformer", {{"chunk", 1}, {"n_hashes", 1}}, p, in),
            tolerance("reformer", p, in));
}

// ---------------------------------------------------------------------------------------------
// Hashing and sorting

RowMatrix gaussian(Index n, Index d, std::uint64_t seed) {
  Rng rng(seed, 0xa5);
  RowMatrix x(n, d);
  for (Index i = 0; i < n; ++i) {
    for (Index c = 0; c < d; ++c) x(i, c) = static_cast<float>(rng.normal());
  }
  return x;
}

lsh::Config hash_config(Index n, Index d, Index hashes, Index n_buckets) {
  lsh::Config cfg;
  cfg.n = n;
  cfg.d = d;
  cfg.n_hashes = hashes;
  cfg.chunk = 8;
  cfg.seed = 3;
  cfg.buckets = lsh::explicit_buckets(n_buckets);
  return cfg;
}

TEST(LshHash, InvariantUnderPositiveScaling) {
  for (Index nb : {2, 16, 128, 512}) {
    const lsh::Config cfg = hash_config(500, 24, 3, nb);
    const RowMatrix x = gaussian(cfg.n, cfg.d, 1);
    const RowMatrix rot = lsh::draw_rotations(cfg, 0);
    const auto base = lsh::hash_all(x, rot, cfg);
    // Powers of two scale every product exactly, so the argmax cannot move by rounding.
    for (float alpha : {0x1p-10f, 0.5f, 8.0f, 0x1p10f}) {
      const RowMatrix scaled = alpha * x;
      EXPECT_EQ(lsh::hash_all(scaled, rot, cfg), base) << "nb=" << nb << " alpha=" << alpha;
    }
  }
}

TEST(LshHash, NegationMovesToTheAntipodalBucket) {
  for (Index nb : {2, 8, 64, 128}) {
    const lsh::Config cfg = hash_config(500, 24, 3, nb);
    ASSERT_EQ(cfg.buckets.factors.size(), 1u);
    const RowMatrix x = gaussian(cfg.n, cfg.d, 2);
    const RowMatrix rot = lsh::draw_rotations(cfg, 0);
    const auto pos = lsh::hash_all(x, rot, cfg);
    const RowMatrix neg_x = -x;
    const auto neg = lsh::hash_all(neg_x, rot, cfg);
    for (std::size_t i = 0; i < pos.size(); ++i) {
      ASSERT_EQ(neg[i], (pos[i] + nb / 2) % nb) << "nb=" << nb << " entry " << i;
    }
  }
  // Factorised: each factor's digit moves to its own antipode.
  const lsh::Config cfg = hash_config(300, 24, 2, 512);
  ASSERT_EQ(cfg.buckets.factors.size(), 2u);
  const Index f1 = cfg.buckets.factors[0], f2 = cfg.buckets.factors[1];
  EXPECT_EQ(f1 * f2, 512);
  const RowMatrix x = gaussian(cfg.n, cfg.d, 4);
  const RowMatrix rot = lsh::draw_rotations(cfg, 0);
  const auto pos = lsh::hash_all(x, rot, cfg);
  const RowMatrix neg_x = -x;
  const auto neg = lsh::hash_all(neg_x, rot, cfg);
  for (std::size_t i = 0; i < pos.size(); ++i) {
    const Index lo = (pos[i] % f1 + f1 / 2) % f1, hi = (pos[i] / f1 + f2 / 2) % f2;
    ASSERT_EQ(neg[i], lo + f1 * hi) << "entry " << i;
  }
}

TEST(LshHash, BucketsAreRoughlyUniformForGaussianInputs) {
  for (Index nb : {8, 32}) {
    const lsh::Config cfg = hash_config(16000, 64, 2, nb);
    const auto b = lsh::hash_all(gaussian(cfg.n, cfg.d, 5), lsh::draw_rotations(cfg, 0), cfg);
    std::vector<Index> hist(nb, 0);
    for (auto x : b) {
      ASSERT_GE(x, 0);
      ASSERT_LT(x, nb);
      ++hist[x];
    }
    const double mean = double(b.size()) / double(nb);
    for (Index k = 0; k < nb; ++k) {
      EXPECT_GT(hist[k], 0.5 * mean) << "bucket " << k << " of " << nb;
      EXPECT_LT(hist[k], 1.5 * mean) << "bucket " << k << " of " << nb;
    }
  }
}

TEST(LshHash, CollisionProbabilityFallsWithAngle) {
  // Pairs of unit vectors at a given angle; the fraction that share a bucket, over many pairs
  // and rounds, must fall as the angle grows.
  const Index pairs = 1000, d = 32, hashes = 8;
  lsh::Config cfg = hash_config(2 * pairs, d, hashes, 16);
  const RowMatrix rot = lsh::draw_rotations(cfg, 0);
  double previous = 2.0;
  for (double angle : {0.1, 0.5, 1.0, 1.6, 2.5}) {
    RowMatrix x(2 * pairs, d);
    const RowMatrix a = gaussian(pairs, d, 10), b = gaussian(pairs, d, 11);
    for (Index i = 0; i < pairs; ++i) {
      Eigen::VectorXf u = a.row(i).transpose().normalized();
      Eigen::VectorXf w = b.row(i).transpose();
      w = (w - w.dot(u) * u).normalized();  // orthogonal to u
      x.row(2 * i) = u.transpose();
      x.row(2 * i + 1) = (std::cos(angle) * u + std::sin(angle) * w).transpose();
    }
    const auto buckets = lsh::hash_all(x, rot, cfg);
    Index same = 0;
    for (Index i = 0; i < pairs; ++i) {
      for (Index r = 0; r < hashes; ++r) {
        same += buckets[2 * i * hashes + r] == buckets[(2 * i + 1) * hashes + r];
      }
    }
    const double rate = double(same) / double(pairs * hashes);
    EXPECT_LT(rate, previous) << "angle " << angle;
    previous = rate;
  }
}

TEST(LshSort, SortsByBucketThenPositionAndInverts) {
  // Hand-made buckets with ties, and random ones through the layout.
  const std::vector<std::int32_t> buckets = {3, 1, 3, 0, 1, 3, 2, 0, 0};
  const Index n = 9, n_pad = 12;
  std::vector<std::int32_t> counts(4), perm(n_pad), slot(n);
  lsh::sort_round(buckets.data(), 1, n, 4, n_pad, counts.data(), perm.data(), slot.data());
  const std::vector<std::int32_t> expect = {3, 7, 8, 1, 4, 6, 0, 2, 5, 9, 10, 11};
  EXPECT_EQ(perm, expect);
  for (Index i = 0; i < n; ++i) EXPECT_EQ(perm[slot[i]], i);

  const Problem p = make_problem(300, 300, 16, 4, 1, 1);
  const auto in = make_inputs(p, 7);
  for (bool shared : {true, false}) {
    const std::string variant = shared ? "reformer" : "reformer_qk";
    const lsh::Config cfg = config_of(variant, p, {{"n_hashes", 3}, {"chunk", 32}});
    const lsh::Layout lay = lsh::make_layout(in.q.head(0, 0), in.k.head(0, 0), cfg, 0);
    for (Index r = 0; r < cfg.n_hashes; ++r) {
      for (int side = 0; side < 2; ++side) {
        const auto& perm_r = side ? lay.k_perm[r] : lay.q_perm[r];
        const auto& slot_r = side ? lay.k_slot[r] : lay.q_slot[r];
        const auto& b = side ? lay.k_buckets : lay.q_buckets;
        ASSERT_EQ(Index(perm_r.size()), cfg.n_pad());
        for (Index s = 1; s < cfg.n; ++s) {
          const auto prev = b[perm_r[s - 1] * cfg.n_hashes + r],
                     cur = b[perm_r[s] * cfg.n_hashes + r];
          ASSERT_LE(prev, cur) << "round " << r << " slot " << s;
          if (prev == cur) {
            ASSERT_LT(perm_r[s - 1], perm_r[s]);
          }
        }
        for (Index s = cfg.n; s < cfg.n_pad(); ++s) EXPECT_GE(perm_r[s], cfg.n);
        for (Index i = 0; i < cfg.n; ++i) ASSERT_EQ(perm_r[slot_r[i]], i);
      }
    }
  }
}

TEST(LshLayout, VisibleChunksWrapPerRoundOrGlobally) {
  lsh::Config cfg;
  cfg.n = 64;
  cfg.chunk = 8;  // 8 chunks
  cfg.n_hashes = 3;
  using V = std::vector<std::pair<Index, Index>>;
  EXPECT_EQ(lsh::visible_chunks(cfg, 1, 0), (V{{1, 7}, {1, 0}}));
  EXPECT_EQ(lsh::visible_chunks(cfg, 1, 5), (V{{1, 4}, {1, 5}}));
  cfg.chunks_after = 1;
  EXPECT_EQ(lsh::visible_chunks(cfg, 2, 7), (V{{2, 6}, {2, 7}, {2, 0}}));
  cfg.global_lookback = true;
  EXPECT_EQ(lsh::visible_chunks(cfg, 1, 0), (V{{0, 7}, {1, 0}, {1, 1}}));
  EXPECT_EQ(lsh::visible_chunks(cfg, 2, 7), (V{{2, 6}, {2, 7}, {0, 0}}));
  EXPECT_EQ(lsh::visible_chunks(cfg, 0, 0), (V{{2, 7}, {0, 0}, {0, 1}}));
  // The reference codes' count does not see the cross-round neighbour.
  EXPECT_FALSE(lsh::counted(cfg, 0, 7));
  EXPECT_TRUE(lsh::counted(cfg, 3, 2));
  cfg.global_lookback = false;
  EXPECT_TRUE(lsh::counted(cfg, 0, 7));
  cfg.chunks_before = 10;  // covers the round: every chunk once
  EXPECT_EQ(lsh::visible_chunks(cfg, 1, 3).size(), 8u);
}

TEST(LshBuckets, AutomaticAndExplicitCounts) {
  EXPECT_EQ(lsh::auto_buckets(64).n_buckets, 128);
  EXPECT_EQ(lsh::auto_buckets(64).factors.size(), 1u);
  const lsh::BucketPlan big = lsh::auto_buckets(1024);  // 2048 = 64 x 32 (trax)
  EXPECT_EQ(big.factors, (std::vector<Index>{64, 32}));
  EXPECT_EQ(lsh::auto_buckets(100).n_buckets, 192);  // 200 -> 16 x 12 as trax
  for (Index nb : {130, 200, 256, 1000, 4096, 262}) {
    const lsh::BucketPlan plan = lsh::explicit_buckets(nb);
    EXPECT_EQ(plan.n_buckets, nb);
    Index product = 1;
    for (Index f : plan.factors) {
      EXPECT_EQ(f % 2, 0) << nb;
      product *= f;
    }
    EXPECT_EQ(product, nb);
    if (nb % 4 == 0) {
      EXPECT_LT(plan.rotation_cols(), nb / 4) << nb;
    }
  }
  const Problem p = make_problem(65536, 65536, 64, 64, 1, 1);
  auto attn = make_attention("reformer", p, Json::object());
  EXPECT_EQ(attn->resolved_params().at("n_buckets"), 2048);
  EXPECT_EQ(attn->resolved_params().at("chunk"), 64);
}

// ---------------------------------------------------------------------------------------------
// Causality

TEST(Reformer, CausalRowsIgnoreLaterValuesAndBucketPreservingChanges) {
  const Index n = 256, t = 120;
  const Problem p = make_problem(n, n, 16, 8, 1, 2, true);
  const auto in = make_inputs(p, 101);
  const Json params = {{"n_hashes", 4}, {"chunk", 16}};
  const Tensor4 base = run_variant("reformer", params, p, in);
  auto later = in;
  for (Index h = 0; h < p.heads; ++h) {
    for (Index j = t + 1; j < n; ++j) {
      later.v.head(0, h).row(j).array() += 5.0f;
      later.q.head(0, h).row(j) *= 4.0f;  // same buckets (exact positive scaling)
    }
  }
  const Tensor4 changed = run_variant("reformer", params, p, later);
  for (Index h = 0; h < p.heads; ++h) {
    EXPECT_EQ(
        (base.head(0, h).topRows(t + 1) - changed.head(0, h).topRows(t + 1)).cwiseAbs().maxCoeff(),
        0.0f);
  }
}

// Deviation from variants.md §4.3, which expects o_{<=t} not to depend on x_{>t} at all: the
// chunk boundaries come from the sort of all tokens, so a later token that changes bucket shifts
// earlier tokens between chunks and changes which earlier keys a row sees. No row ever uses a
// later key (EveryModeMatchesTheBruteForce covers that under causal masking); only its set of
// earlier keys moves. This is true of trax and reformer-pytorch as well.
TEST(Reformer, CausalVisibleSetsOfEarlierRowsDependOnLaterBuckets) {
  const Index n = 256, t = 120;
  const Problem p = make_problem(n, n, 16, 8, 1, 1, true);
  const auto in = make_inputs(p, 102);
  auto later = in;
  for (Index j = t + 1; j < n; ++j) later.q.head(0, 0).row(j) *= -1.0f;  // antipodal buckets
  const Json params = {{"n_hashes", 2}, {"chunk", 16}};
  const Tensor4 a = run_variant("reformer", params, p, in);
  const Tensor4 b = run_variant("reformer", params, p, later);
  EXPECT_GT((a.head(0, 0).topRows(t + 1) - b.head(0, 0).topRows(t + 1)).cwiseAbs().maxCoeff(),
            0.0f);
  EXPECT_LE(max_diff_to_brute_force("reformer", params, p, later), tolerance("reformer", p, later));
}

// ---------------------------------------------------------------------------------------------
// Statistics: more rounds never hurt on clustered inputs

// variants.md §8.2 clustered shared-QK inputs: x = a mu_c + sigma eps, 16 centres.
testing::Inputs clustered(const Problem& p, std::uint64_t seed) {
  testing::Inputs in = make_inputs(p, seed);
  Rng rng(seed, 0xc1);
  const Index centres = 16;
  RowMatrix mu(centres, p.d);
  for (Index c = 0; c < centres; ++c) {
    for (Index k = 0; k < p.d; ++k) mu(c, k) = static_cast<float>(rng.normal());
  }
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      auto q = in.q.head(b, h);
      for (Index i = 0; i < p.n_q; ++i) {
        const Index c = static_cast<Index>(rng.uniform_int(centres));
        for (Index k = 0; k < p.d; ++k) q(i, k) = 2.0f * mu(c, k) + 0.3f * float(rng.normal());
      }
    }
  }
  return in;
}

// Each seed draws new clustered inputs and new rotations; every round count runs on the same
// (inputs, seed) pairs, so the mean error over seeds must not grow with the rounds, and from 1 to
// 8 rounds it must fall strictly: the paired differences e_1(s) - e_8(s) are independent over
// seeds, so their mean must exceed 3 standard errors estimated from their own spread (a one-sided
// t-test at about the 2% level with 4 degrees of freedom, no copied error level).
TEST(Reformer, ErrorDoesNotGrowWithRoundsOnClusteredInputs) {
  const Problem p = make_problem(1024, 1024, 32, 16, 1, 2);
  const int seeds = 5;
  const std::vector<Index> rounds = {1, 2, 4, 8};
  std::vector<std::vector<double>> errors(rounds.size());  // [rounds][seed]
  for (std::size_t r = 0; r < rounds.size(); ++r) {
    for (int s = 0; s < seeds; ++s) {
      const auto in = clustered(p, 200 + s);
      const Tensor4 out = run_variant("reformer", {{"n_hashes", rounds[r]}, {"seed", s}}, p, in);
      errors[r].push_back(error_vs_reference(out, p, in, ReferenceKind::kSharedQkSoftmax).rel_fro);
    }
  }
  auto mean = [](const std::vector<double>& x) {
    return std::accumulate(x.begin(), x.end(), 0.0) / double(x.size());
  };
  for (std::size_t r = 1; r < rounds.size(); ++r) {
    EXPECT_LE(mean(errors[r]), mean(errors[r - 1])) << "n_hashes " << rounds[r];
  }
  std::vector<double> fall(seeds);
  for (int s = 0; s < seeds; ++s) fall[s] = errors.front()[s] - errors.back()[s];
  const double m = mean(fall);
  double ss = 0;
  for (double x : fall) ss += (x - m) * (x - m);
  const double se = std::sqrt(ss / double(seeds - 1) / double(seeds));
  EXPECT_GT(m, 3.0 * se) << "mean error " << mean(errors.front()) << " at 1 round, "
                         << mean(errors.back()) << " at 8; paired fall " << m << " +- " << se;
}

// ---------------------------------------------------------------------------------------------
// Parameters

void expect_rejected(const std::string& variant, const Json& params, const Problem& p,
                     const std::vector<std::string>& fragments) {
  const auto in = make_inputs(p, 1);
  try {
    run_variant(variant, params, p, in);
    ADD_FAILURE() << variant << " accepted " << params.dump();
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(variant), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << msg;
  }
}

TEST(Reformer, BadParametersGiveClearErrors) {
  const Problem p = make_problem(256, 256, 16, 8);
  for (const char* variant : {"reformer", "reformer_qk"}) {
    expect_rejected(variant, {{"n_buckets", 7}}, p, {"n_buckets", "7", "even"});
    expect_rejected(variant, {{"chunk", 0}}, p, {"chunk", "0"});
    expect_rejected(variant, {{"chunk", 300}}, p, {"chunk", "300", "256"});
    expect_rejected(variant, {{"n_hashes", 0}}, p, {"n_hashes", "0"});
    expect_rejected(variant, {{"no_such", 1}}, p, {"no_such", "n_hashes"});
    expect_rejected(variant, Json::object(), make_problem(100, 200, 16, 8), {"n_q = n_k"});
  }
  expect_rejected("reformer", {{"shared_qk", false}}, p, {"shared_qk", "reformer_qk"});
  expect_rejected("reformer_qk", {{"shared_qk", true}}, p, {"shared_qk"});
}

TEST(Reformer, CostModelIsLinearInLength) {
  for (const char* variant : {"reformer", "reformer_qk"}) {
    const VariantInfo& info = Registry::instance().get(variant);
    const ParamSet params = resolve_variant_params(variant, Json::object());
    const Cost small = info.cost(make_problem(16384, 16384, 64, 64, 1, 8), params, 2);
    const Cost big = info.cost(make_problem(65536, 65536, 64, 64, 1, 8), params, 2);
    EXPECT_GT(big.flops / small.flops, 3.5) << variant;
    EXPECT_LT(big.flops / small.flops, 5.0) << variant;
    EXPECT_GT(big.memory_bytes / small.memory_bytes, 2.0) << variant;
    EXPECT_LT(big.memory_bytes / small.memory_bytes, 4.5) << variant;
  }
}

}  // namespace
}  // namespace attnbench
