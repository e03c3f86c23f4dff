// Tests of h1d (H-Transformer-1D): the partition property of its block layout, agreement with a
// dense double-precision evaluation of the same hierarchical logits, its exact limits, padding,
// causality, error against exact attention on local-decay inputs, and parameter errors.
#include <gtest/gtest.h>

#include <tbb/task_arena.h>

#include "tests/hierarchical/hier_test_util.h"
#include "variants/hierarchical/h1d_layout.h"

namespace attnbench {
namespace {

using hierarchical::h1d_covering_levels;
using hierarchical::h1d_geometry;
using hierarchical::H1dGeometry;
using testing::dense_attention;
using testing::exact_tolerance;
using testing::head_max_abs;
using testing::Inputs;
using testing::kNegInfD;
using testing::make_inputs;
using testing::make_problem;
using testing::run_variant;

// The level that covers (i, j) by the paper's definition, independent of the kernel's tiles:
// the finest level at which the blocks of i and j (blocks of Nr 2^l fine positions) are equal
// or adjacent. The top level has two blocks, so some level always qualifies.
Index expected_level(const H1dGeometry& g, Index i, Index j) {
  for (Index l = 0; l < g.levels; ++l) {
    const Index span = g.nr << l;
    if (std::abs(i / span - j / span) <= 1) return l;
  }
  return -1;
}

bool key_valid(const KeyMask& mask, Index b, Index j) { return mask.empty() || mask.valid(b, j); }

// Mean of rows [t 2^l, (t+1) 2^l) of x over valid positions (< n and unmasked); when a group
// has none, the mean over its real positions if `fallback`, else zeros.
RowMatrixD group_means(ConstMatMap x, const KeyMask& mask, Index b, Index l, bool fallback) {
  const Index n = x.rows(), size = Index(1) << l, groups = (n + size - 1) / size;
  RowMatrixD out = RowMatrixD::Zero(groups, x.cols());
  for (Index t = 0; t < groups; ++t) {
    Index valid = 0, real = 0;
    Eigen::RowVectorXd sum_valid = Eigen::RowVectorXd::Zero(x.cols());
    Eigen::RowVectorXd sum_real = sum_valid;
    for (Index j = t * size; j < std::min(n, (t + 1) * size); ++j) {
      ++real;
      sum_real += x.row(j).cast<double>();
      if (key_valid(mask, b, j)) {
        ++valid;
        sum_valid += x.row(j).cast<double>();
      }
    }
    if (valid > 0) {
      out.row(t) = sum_valid / double(valid);
    } else if (fallback && real > 0) {
      out.row(t) = sum_real / double(real);
    }
  }
  return out;
}

// The paper's hierarchical attention evaluated densely in double: pair (i, j) at its level l
// has the logit scale <qbar, kbar> of the level-l groups of i and j (keys: mean over valid
// tokens; queries: the same, or causal: the group's first position, zero when it is padding),
// and every valid fine key j carries its own weight exp(logit) (the count factor).
RowMatrixD h1d_dense(const Inputs& in, const Problem& p, Index b, Index h, Index nr) {
  const H1dGeometry g = h1d_geometry(p.n_k, nr);
  std::vector<RowMatrixD> qbar, kbar;
  for (Index l = 0; l < g.levels; ++l) {
    kbar.push_back(group_means(in.k.head(b, h), in.mask, b, l, false));
    if (p.causal) {
      const Index size = Index(1) << l;
      RowMatrixD qs = RowMatrixD::Zero(kbar.back().rows(), p.d);
      for (Index t = 0; t < qs.rows(); ++t) {
        // Level 0 keeps every row's own query; coarse samples of padding are zeroed.
        if (l == 0 || key_valid(in.mask, b, t * size)) {
          qs.row(t) = in.q.head(b, h).row(t * size).cast<double>();
        }
      }
      qbar.push_back(qs);
    } else {
      qbar.push_back(group_means(in.q.head(b, h), in.mask, b, l, true));
    }
  }
  const double scale = p.effective_scale();
  return dense_attention(p.n_q, in.v.head(b, h), [&](Index i, Index j) {
    if (!key_valid(in.mask, b, j) || (p.causal && j > i)) return kNegInfD;
    const Index l = expected_level(g, i, j);
    return scale * qbar[l].row(i >> l).dot(kbar[l].row(j >> l));
  });
}

// A scattered key mask plus a padded tail that grows with the batch index.
KeyMask scattered_mask(Index batch, Index n) {
  KeyMask mask(batch, n);
  for (Index b = 0; b < batch; ++b) {
    for (Index j = 0; j < n; ++j) {
      if ((j * 7 + b * 3) % 11 == 0 || j >= n - b * (n / 4)) mask.set(b, j, false);
    }
  }
  return mask;
}

TEST(H1dLayout, GeometryPadsToNrTimesAPowerOfTwo) {
  struct Case {
    Index n, nr, levels, padded;
  };
  for (const Case& c : {Case{256, 16, 4, 256}, Case{200, 16, 4, 256}, Case{257, 16, 5, 512},
                        Case{64, 64, 1, 128}, Case{63, 32, 1, 64}, Case{130, 6, 5, 192}}) {
    const H1dGeometry g = h1d_geometry(c.n, c.nr);
    EXPECT_EQ(g.levels, c.levels) << c.n << " " << c.nr;
    EXPECT_EQ(g.padded, c.padded) << c.n << " " << c.nr;
    EXPECT_EQ(g.level_blocks(g.levels - 1), 2) << "the top level has exactly two blocks";
  }
}

// Partition property: every allowed pair (i, j) lies in exactly one tile, at the level the
// paper assigns it; causal tiles cover no pair with j > i.
TEST(H1dLayout, EveryPairIsCoveredByExactlyOneTile) {
  struct Case {
    Index n, nr;
  };
  // Nr = 6 has an odd half (h = 3); 200 and 130 are padded; 64/32 has a single level.
  for (const Case& c : {Case{256, 16}, Case{200, 8}, Case{64, 32}, Case{130, 6}, Case{96, 2}}) {
    const H1dGeometry g = h1d_geometry(c.n, c.nr);
    for (bool causal : {false, true}) {
      Index bad = 0;
      for (Index i = 0; i < c.n; ++i) {
        for (Index j = 0; j < c.n; ++j) {
          const auto levels = h1d_covering_levels(g, i, j, causal);
          const bool allowed = !causal || j <= i;
          const bool ok = allowed ? (levels.size() == 1 && levels[0] == expected_level(g, i, j))
                                  : levels.empty();
          if (!ok && bad++ < 5) {
            ADD_FAILURE() << "n=" << c.n << " Nr=" << c.nr << " causal=" << causal << " pair (" << i
                          << ", " << j << ") covered " << levels.size() << " times, expected level "
                          << expected_level(g, i, j);
          }
        }
      }
      EXPECT_EQ(bad, 0);
    }
  }
}

TEST(H1dLayout, ScoreCountIsLinearInN) {
  // At most 3 Nr scores per level-0 row and 1.5 Nr per coarse row: below 4.5 L Nr in total.
  for (Index n : {1024, 4096, 65536}) {
    const H1dGeometry g = h1d_geometry(n, 32);
    const double scores = hierarchical::h1d_score_count(g, false);
    EXPECT_LE(scores, 4.5 * double(g.padded) * 32);
    EXPECT_GE(scores, 3.0 * double(n) * 32 * 0.9);
    EXPECT_LT(hierarchical::h1d_score_count(g, true), scores);
  }
}

// With Q = K = 0 every logit is 0, so the output must be the plain mean of V over the allowed
// keys A_i (valid keys, and j <= i when causal): with V = I, entry (i, j) is 1/|A_i| for j in A_i
// and 0 otherwise (a row with A_i empty is all 0). Any pair covered twice or missed, a missing
// count factor, or padding (of L beyond n, or masked keys) entering a mean or a count shows up
// here. n = 200 and 130 pad L to 256; the masks are scattered, with a padded tail in batch 1.
// Bound: every weight is exp(0) = 1 (within 1 ulp) and a disallowed one exactly 0, so the
// numerator of an allowed entry is 1 and the denominator a sum of |A_i| ones merged over the
// levels; each carries a relative error of at most (|A_i| + 1) eps / 2 (recursive summation),
// and the division (by reciprocal) 2 eps more: |o_ij - 1/|A_i|| <= (|A_i| + 5) eps / |A_i|.
TEST(H1d, ZeroLogitsGiveTheMeanOfV) {
  for (Index n : {256, 200, 130}) {
    for (Index nr : {2, 8, 16, 64, 128}) {
      for (bool causal : {false, true}) {
        for (bool masked : {false, true}) {
          const Index batch = masked ? 2 : 1;
          const Problem p = make_problem(n, n, 8, n, batch, 1, causal, masked);
          Inputs in = make_inputs(p, 1);
          if (masked) in.mask = scattered_mask(batch, n);
          in.q.storage().assign(in.q.storage().size(), 0.0f);
          in.k.storage().assign(in.k.storage().size(), 0.0f);
          for (Index b = 0; b < batch; ++b) in.v.head(b, 0) = RowMatrix::Identity(n, n);
          const Tensor4 out = run_variant("h1d", {{"block", nr}}, p, in);
          double worst = 0;  // largest error in units of the bound
          for (Index b = 0; b < batch; ++b) {
            for (Index i = 0; i < n; ++i) {
              Index allowed = 0;
              for (Index j = 0; j < n; ++j)
                allowed += key_valid(in.mask, b, j) && (!causal || j <= i);
              for (Index j = 0; j < n; ++j) {
                const bool in_set = key_valid(in.mask, b, j) && (!causal || j <= i);
                const double got = out.at(b, 0, i, j);
                if (!in_set) {
                  EXPECT_EQ(got, 0.0)
                      << "n=" << n << " Nr=" << nr << " causal=" << causal << " masked=" << masked
                      << " b=" << b << " (" << i << ", " << j << ") is not allowed";
                  continue;
                }
                const double bound = double(allowed + 5) * testing::kFloatEps / double(allowed);
                worst = std::max(worst, std::fabs(got - 1.0 / double(allowed)) / bound);
              }
            }
          }
          EXPECT_LE(worst, 1.0) << "n=" << n << " Nr=" << nr << " causal=" << causal
                                << " masked=" << masked;
        }
      }
    }
  }
}

// The kernel equals the dense evaluation of the same hierarchical logits, to float rounding,
// over awkward sizes, padding of L, scattered key masks, several heads and both masks.
TEST(H1d, MatchesTheDenseHierarchicalEvaluation) {
  struct Case {
    Index n, nr, d, dv, batch, heads;
    bool causal, masked;
  };
  const Case cases[] = {
      {256, 16, 16, 8, 1, 2, false, false}, {200, 16, 16, 24, 1, 2, false, false},
      {200, 16, 16, 24, 1, 2, true, false}, {130, 6, 8, 8, 1, 1, false, false},
      {130, 6, 8, 8, 1, 1, true, false},    {300, 8, 32, 16, 3, 2, false, true},
      {300, 8, 32, 16, 3, 2, true, true},   {97, 2, 4, 5, 1, 3, false, true},
      {64, 64, 16, 16, 1, 1, false, false}, {515, 32, 64, 64, 2, 3, false, true},
  };
  for (const Case& c : cases) {
    Problem p = make_problem(c.n, c.n, c.d, c.dv, c.batch, c.heads, c.causal, c.masked);
    Inputs in = make_inputs(p, 11 + c.n + c.nr, /*temperature=*/2.0);
    if (c.masked) in.mask = scattered_mask(c.batch, c.n);
    const Tensor4 out = run_variant("h1d", {{"block", c.nr}}, p, in);
    const double tol = exact_tolerance(p, in);
    for (Index b = 0; b < p.batch; ++b) {
      for (Index h = 0; h < p.heads; ++h) {
        const RowMatrixD ref = h1d_dense(in, p, b, h, c.nr);
        EXPECT_LE(head_max_abs(out, b, h, ref), tol)
            << "n=" << c.n << " Nr=" << c.nr << " causal=" << c.causal << " masked=" << c.masked
            << " b=" << b << " h=" << h;
      }
    }
  }
}

// Nr = L / 2 leaves one level whose three blocks cover everything: exact attention.
TEST(H1d, ExactWhenNrIsHalfThePaddedLength) {
  for (auto [n, nr] : {std::pair<Index, Index>{256, 128}, {200, 128}, {64, 64}, {50, 26}}) {
    for (bool causal : {false, true}) {
      const Problem p = make_problem(n, n, 32, 16, 2, 2, causal, true);
      const Inputs in = make_inputs(p, 21, 2.0);
      const Tensor4 out = run_variant("h1d", {{"block", nr}}, p, in);
      const ErrorMetrics m = testing::error_vs_reference(out, p, in);
      EXPECT_LE(m.max_abs, exact_tolerance(p, in)) << "n=" << n << " Nr=" << nr;
    }
  }
}

// Q and K constant on aligned groups of 2^(M-1) make every coarsening lossless: exact for any
// V. Groups half that size are not (the control, so that the test can fail).
TEST(H1d, ExactWhenQAndKAreConstantOnCoarsestGroups) {
  const Index n = 512, nr = 16;  // L = 512, M = 5, groups of 16
  const H1dGeometry g = h1d_geometry(n, nr);
  for (bool causal : {false, true}) {
    double control_error = 0;
    for (Index group : {Index(1) << (g.levels - 1), Index(1) << (g.levels - 2)}) {
      const Problem p = make_problem(n, n, 16, 16, 1, 2, causal);
      Inputs in = make_inputs(p, 31, 2.0);
      for (Index h = 0; h < p.heads; ++h) {
        for (Tensor4* t : {&in.q, &in.k}) {
          auto m = t->head(0, h);
          for (Index i = 0; i < n; ++i) m.row(i) = m.row(i / group * group).eval();
        }
      }
      const Tensor4 out = run_variant("h1d", {{"block", nr}}, p, in);
      const ErrorMetrics m = testing::error_vs_reference(out, p, in);
      if (group == (Index(1) << (g.levels - 1))) {
        EXPECT_LE(m.max_abs, exact_tolerance(p, in)) << "causal=" << causal;
      } else {
        control_error = m.rel_fro;
      }
    }
    EXPECT_GT(control_error, 1e-3) << "finer groups should not be exact (causal=" << causal << ")";
  }
}

// Changing the queries, keys and values of padding positions changes no valid row: padding
// never enters a coarse mean, a count, or a sampled query.
TEST(H1d, PaddingNeverLeaks) {
  for (bool causal : {false, true}) {
    for (Index nr : {4, 16}) {
      const Problem p = make_problem(240, 240, 16, 8, 2, 2, causal, true);
      Inputs in = make_inputs(p, 41);
      in.mask = scattered_mask(p.batch, p.n_k);
      Inputs garbage = in;
      for (Index b = 0; b < p.batch; ++b) {
        for (Index h = 0; h < p.heads; ++h) {
          for (Index j = 0; j < p.n_k; ++j) {
            if (in.mask.valid(b, j)) continue;
            garbage.q.head(b, h).row(j).setConstant(1e3f);
            garbage.k.head(b, h).row(j).setConstant(-7e2f);
            garbage.v.head(b, h).row(j).setConstant(5e3f);
          }
        }
      }
      const Tensor4 a = run_variant("h1d", {{"block", nr}}, p, in);
      const Tensor4 c = run_variant("h1d", {{"block", nr}}, p, garbage);
      double worst = 0;
      for (Index b = 0; b < p.batch; ++b) {
        for (Index h = 0; h < p.heads; ++h) {
          for (Index i = 0; i < p.n_q; ++i) {
            if (!in.mask.valid(b, i)) continue;
            worst = std::max<double>(
                worst, (a.head(b, h).row(i) - c.head(b, h).row(i)).cwiseAbs().maxCoeff());
          }
        }
      }
      EXPECT_EQ(worst, 0.0) << "causal=" << causal << " Nr=" << nr;
    }
  }
}

// Causal rows never depend on later queries, keys or values (the query samples are the first
// position of each group, never a later one).
TEST(H1d, CausalRowsIgnoreEveryLaterInput) {
  const Index n = 256;
  for (Index t : {0, 15, 16, 17, 100, 127, 128, 200}) {
    const Problem p = make_problem(n, n, 16, 8, 1, 2, true);
    const Inputs in = make_inputs(p, 51);
    Inputs later = in;
    for (Index h = 0; h < p.heads; ++h) {
      for (Index j = t + 1; j < n; ++j) {
        later.q.head(0, h).row(j).array() += 2.5f;
        later.k.head(0, h).row(j).array() *= -3.0f;
        later.v.head(0, h).row(j).array() += 4.0f;
      }
    }
    const Tensor4 a = run_variant("h1d", {{"block", 8}}, p, in);
    const Tensor4 b = run_variant("h1d", {{"block", 8}}, p, later);
    for (Index h = 0; h < p.heads; ++h) {
      EXPECT_EQ((a.head(0, h).topRows(t + 1) - b.head(0, h).topRows(t + 1)).cwiseAbs().maxCoeff(),
                0.0f)
          << "row <= " << t << " changed with inputs after it";
    }
  }
}

// On local-decay inputs (logits peaked at i = j) a larger Nr makes more of each row exact, so
// the mean error over seeds must not grow; at Nr = L / 2 it is exact. Each seed draws new
// frequencies (so new Q and K) and new V for each of 2 heads: the mean is over 8 draws.
TEST(H1d, ErrorDoesNotGrowAsNrGrowsOnLocalDecayInputs) {
  const std::vector<Index> nrs = {8, 16, 32, 64, 128, 256, 512};
  const int seeds = 4;
  for (double alpha : {4.0, 8.0}) {
    const Problem p = make_problem(1024, 1024, 64, 64, 1, 2);
    std::vector<double> mean_error(nrs.size(), 0.0);
    for (int s = 0; s < seeds; ++s) {
      const Inputs in = testing::drawn_local_decay_inputs(p, alpha, 61 + s);
      const auto ref = reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax,
                                           all_rows(p.n_q));
      for (std::size_t r = 0; r < nrs.size(); ++r) {
        const Tensor4 out = run_variant("h1d", {{"block", nrs[r]}}, p, in);
        const ErrorMetrics m = compute_error(out, in.v, ref);
        mean_error[r] += m.rel_fro_mean / seeds;
        if (nrs[r] == 512) {
          EXPECT_LE(m.max_abs, exact_tolerance(p, in)) << "Nr = L/2 is exact (seed " << s << ")";
        }
      }
    }
    for (std::size_t r = 0; r < nrs.size(); ++r) {
      RecordProperty("alpha" + std::to_string(int(alpha)) + "_Nr" + std::to_string(nrs[r]),
                     std::to_string(mean_error[r]));
      if (r > 0) {
        EXPECT_LE(mean_error[r], mean_error[r - 1]) << "alpha=" << alpha << " Nr=" << nrs[r];
      }
    }
  }
}

TEST(H1d, OneAndTwoThreadsAgreeBitwiseWithMoreHeadsThanThreads) {
  const Problem p = make_problem(300, 300, 16, 8, 2, 5, false, true);
  const Inputs in = make_inputs(p, 71);
  Tensor4 one, two;
  tbb::task_arena(1).execute([&] { one = run_variant("h1d", {{"block", 8}}, p, in); });
  tbb::task_arena(2).execute([&] { two = run_variant("h1d", {{"block", 8}}, p, in); });
  EXPECT_EQ(testing::max_abs_diff(one, two), 0.0);
}

TEST(H1d, BadBlockSizesAreRejectedClearly) {
  const Problem p = make_problem(100, 100, 8, 8);
  testing::expect_rejected("h1d", {{"block", 31}}, p, "block", "31");
  testing::expect_rejected("h1d", {{"block", 0}}, p, "block", "0");
  testing::expect_rejected("h1d", {{"block", 128}}, p, "block", "128");
  testing::expect_rejected("h1d", {{"block", -4}}, p, "block", "-4");
  testing::expect_rejected("h1d", {}, make_problem(100, 80, 8, 8), "n_q", "100");
}

TEST(H1d, ReportsResolvedParametersAndGeometry) {
  const auto attn = make_attention("h1d", make_problem(200, 200, 8, 8), {{"block", 16}});
  EXPECT_EQ(attn->resolved_params().at("block"), 16);
  Tensor4 out(1, 2, 200, 8);
  const Inputs in = make_inputs(make_problem(200, 200, 8, 8), 81);
  attn->forward(in.q, in.k, in.v, out);
  EXPECT_EQ(attn->diagnostics().at("levels"), 4);
  EXPECT_EQ(attn->diagnostics().at("padded_length"), 256);
}

}  // namespace
}  // namespace attnbench
