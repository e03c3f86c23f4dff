// Tests of pooled (two-level hierarchical baseline): agreement with a dense double-precision
// evaluation of its logits, exact limits, padding, causality, error on local-decay inputs,
// default and bad block sizes.
#include <gtest/gtest.h>

#include "tests/hierarchical/hier_test_util.h"

namespace attnbench {
namespace {

using testing::dense_attention;
using testing::exact_tolerance;
using testing::head_max_abs;
using testing::Inputs;
using testing::kNegInfD;
using testing::make_inputs;
using testing::make_problem;
using testing::run_variant;

bool key_valid(const KeyMask& mask, Index b, Index j) { return mask.empty() || mask.valid(b, j); }

// The baseline evaluated densely in double: a key in the query's block or a neighbouring block
// has its exact logit; a key of any other block has the logit of that block's mean valid key,
// and each valid key keeps its own weight (the count factor).
RowMatrixD pooled_dense(const Inputs& in, const Problem& p, Index b, Index h, Index block) {
  const Index n = p.n_k, blocks = (n + block - 1) / block;
  RowMatrixD kbar = RowMatrixD::Zero(blocks, p.d);
  for (Index t = 0; t < blocks; ++t) {
    Index count = 0;
    for (Index j = t * block; j < std::min(n, (t + 1) * block); ++j) {
      if (!key_valid(in.mask, b, j)) continue;
      kbar.row(t) += in.k.head(b, h).row(j).cast<double>();
      ++count;
    }
    if (count > 0) kbar.row(t) /= double(count);
  }
  const double scale = p.effective_scale();
  return dense_attention(p.n_q, in.v.head(b, h), [&](Index i, Index j) {
    if (!key_valid(in.mask, b, j) || (p.causal && j > i)) return kNegInfD;
    const Index bi = i / block, bj = j / block;
    const Eigen::RowVectorXd qi = in.q.head(b, h).row(i).cast<double>();
    if (std::abs(bi - bj) <= 1) return scale * qi.dot(in.k.head(b, h).row(j).cast<double>());
    return scale * qi.dot(kbar.row(bj));
  });
}

KeyMask scattered_mask(Index batch, Index n) {
  KeyMask mask(batch, n);
  for (Index b = 0; b < batch; ++b) {
    for (Index j = 0; j < n; ++j) {
      if ((j * 5 + b) % 7 == 0 || j >= n - b * (n / 3)) mask.set(b, j, false);
    }
  }
  return mask;
}

// With Q = K = 0 every logit is 0 and the count factor makes the output the mean of V over the
// allowed keys exactly: with V = I, 1/n per entry (causal: 1/(i + 1) for j <= i).
TEST(Pooled, ZeroLogitsGiveTheMeanOfV) {
  const Index n = 200;
  for (Index block : {1, 7, 16, 64, 100, 200}) {
    for (bool causal : {false, true}) {
      const Problem p = make_problem(n, n, 8, n, 1, 1, causal);
      Inputs in = make_inputs(p, 1);
      in.q.storage().assign(in.q.storage().size(), 0.0f);
      in.k.storage().assign(in.k.storage().size(), 0.0f);
      in.v.head(0, 0) = RowMatrix::Identity(n, n);
      const Tensor4 out = run_variant("pooled", {{"block", block}}, p, in);
      double worst = 0;
      for (Index i = 0; i < n; ++i) {
        for (Index j = 0; j < n; ++j) {
          const double expected = causal ? (j <= i ? 1.0 / double(i + 1) : 0.0) : 1.0 / double(n);
          worst = std::max(worst, std::fabs(double(out.at(0, 0, i, j)) - expected));
        }
      }
      EXPECT_LE(worst, 1e-6) << "b=" << block << " causal=" << causal;
    }
  }
}

TEST(Pooled, MatchesTheDenseTwoLevelEvaluation) {
  struct Case {
    Index n, block, d, dv, batch, heads;
    bool causal, masked;
  };
  const Case cases[] = {
      {256, 16, 16, 8, 1, 2, false, false}, {250, 16, 16, 24, 1, 2, true, false},
      {300, 7, 32, 16, 3, 2, false, true},  {300, 7, 32, 16, 3, 2, true, true},
      {97, 1, 4, 5, 1, 3, false, true},     {97, 1, 4, 5, 1, 3, true, false},
      {515, 32, 64, 64, 2, 2, false, true},
  };
  for (const Case& c : cases) {
    const Problem p = make_problem(c.n, c.n, c.d, c.dv, c.batch, c.heads, c.causal, c.masked);
    Inputs in = make_inputs(p, 13 + c.n + c.block, 2.0);
    if (c.masked) in.mask = scattered_mask(c.batch, c.n);
    const Tensor4 out = run_variant("pooled", {{"block", c.block}}, p, in);
    const double tol = exact_tolerance(p, in);
    for (Index b = 0; b < p.batch; ++b) {
      for (Index h = 0; h < p.heads; ++h) {
        EXPECT_LE(head_max_abs(out, b, h, pooled_dense(in, p, b, h, c.block)), tol)
            << "n=" << c.n << " b=" << c.block << " causal=" << c.causal << " masked=" << c.masked;
      }
    }
  }
}

// At most two blocks (b >= n/2): every key is in the query's block or a neighbour, so exact.
// (Three blocks are not enough: the first and last blocks see each other pooled; see below.)
TEST(Pooled, ExactWithAtMostTwoBlocks) {
  for (auto [n, block] : {std::pair<Index, Index>{256, 128}, {201, 101}, {64, 64}, {3, 2}}) {
    for (bool causal : {false, true}) {
      const Problem p = make_problem(n, n, 32, 16, 2, 2, causal, true);
      const Inputs in = make_inputs(p, 23, 2.0);
      const Tensor4 out = run_variant("pooled", {{"block", block}}, p, in);
      EXPECT_LE(testing::error_vs_reference(out, p, in).max_abs, exact_tolerance(p, in))
          << "n=" << n << " b=" << block << " causal=" << causal;
    }
  }
}

TEST(Pooled, ThreeBlocksAreExactOnlyForTheMiddleBlock) {
  const Index n = 96, block = 32;
  const Problem p = make_problem(n, n, 16, 16, 1, 1);
  const Inputs in = make_inputs(p, 27, 2.0);
  const Tensor4 out = run_variant("pooled", {{"block", block}}, p, in);
  const auto ref =
      reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax, all_rows(n));
  const RowMatrixD diff = out.head(0, 0).cast<double>() - ref[0].out;
  EXPECT_LE(diff.middleRows(block, block).cwiseAbs().maxCoeff(), exact_tolerance(p, in));
  EXPECT_GT(diff.topRows(block).cwiseAbs().maxCoeff(), 1e-3);
}

// Keys constant on each block (over its valid keys) make pooling lossless: exact for any Q, V.
TEST(Pooled, ExactForBlockConstantKeys) {
  for (bool causal : {false, true}) {
    for (Index block : {5, 16}) {
      const Problem p = make_problem(203, 203, 16, 8, 2, 2, causal, true);
      Inputs in = make_inputs(p, 33, 2.0);
      for (Index b = 0; b < p.batch; ++b) {
        for (Index h = 0; h < p.heads; ++h) {
          auto k = in.k.head(b, h);
          for (Index j = 0; j < p.n_k; ++j) k.row(j) = k.row(j / block * block).eval();
        }
      }
      const Tensor4 out = run_variant("pooled", {{"block", block}}, p, in);
      EXPECT_LE(testing::error_vs_reference(out, p, in).max_abs, exact_tolerance(p, in))
          << "causal=" << causal << " b=" << block;
    }
  }
}

TEST(Pooled, PaddingNeverLeaks) {
  for (bool causal : {false, true}) {
    const Problem p = make_problem(240, 240, 16, 8, 2, 2, causal, true);
    Inputs in = make_inputs(p, 43);
    in.mask = scattered_mask(p.batch, p.n_k);
    Inputs garbage = in;
    for (Index b = 0; b < p.batch; ++b) {
      for (Index h = 0; h < p.heads; ++h) {
        for (Index j = 0; j < p.n_k; ++j) {
          if (in.mask.valid(b, j)) continue;
          garbage.k.head(b, h).row(j).setConstant(-7e2f);
          garbage.v.head(b, h).row(j).setConstant(5e3f);
        }
      }
    }
    const Tensor4 a = run_variant("pooled", {{"block", 12}}, p, in);
    const Tensor4 c = run_variant("pooled", {{"block", 12}}, p, garbage);
    EXPECT_EQ(testing::max_abs_diff(a, c), 0.0) << "causal=" << causal;
  }
}

TEST(Pooled, CausalRowsIgnoreEveryLaterInput) {
  const Index n = 200;
  for (Index t : {0, 15, 16, 17, 99, 150}) {
    const Problem p = make_problem(n, n, 16, 8, 1, 2, true);
    const Inputs in = make_inputs(p, 53);
    Inputs later = in;
    for (Index h = 0; h < p.heads; ++h) {
      for (Index j = t + 1; j < n; ++j) {
        later.q.head(0, h).row(j).array() += 2.5f;
        later.k.head(0, h).row(j).array() *= -3.0f;
        later.v.head(0, h).row(j).array() += 4.0f;
      }
    }
    const Tensor4 a = run_variant("pooled", {{"block", 16}}, p, in);
    const Tensor4 b = run_variant("pooled", {{"block", 16}}, p, later);
    for (Index h = 0; h < p.heads; ++h) {
      EXPECT_EQ((a.head(0, h).topRows(t + 1) - b.head(0, h).topRows(t + 1)).cwiseAbs().maxCoeff(),
                0.0f)
          << "row <= " << t << " changed with inputs after it";
    }
  }
}

// Exact softmax weights of one head in double (no mask, not causal): P (n_q, n_k).
RowMatrixD exact_weights(const Inputs& in, const Problem& p, Index b, Index h) {
  const RowMatrixD q = in.q.head(b, h).cast<double>(), k = in.k.head(b, h).cast<double>();
  RowMatrixD s = p.effective_scale() * q * k.transpose();
  for (Index i = 0; i < s.rows(); ++i) {
    s.row(i).array() = (s.row(i).array() - s.row(i).maxCoeff()).exp();
    s.row(i) /= s.row(i).sum();
  }
  return s;
}

// On local-decay inputs (3 heads: the same Q and K, 3 draws of V) every block size beats uniform
// attention and b = n/2 (two blocks) is exact. Small b: a pooled key carries the block's mean
// logit, and b exp(mean) underestimates the block's sum of exp (Jensen) by a gap that grows with
// b, while the exact band (the query's block and its neighbours) still misses much of the
// weight; so the mean error need not fall with b there, and no monotonicity is claimed. Past the
// decay length D of the attention, the mean attended distance sum_j P_ij |i - j| averaged over
// rows (the measure of alpha's sharpness in variants.md §8.3, computed here from the exact
// weights, not from a run of the variant), the band holds most of the weight and a larger block
// must not make the mean error worse: checked for every step b -> 2b with b >= D.
TEST(Pooled, ErrorDoesNotGrowWithTheBlockPastTheDecayLength) {
  const std::vector<Index> blocks = {8, 16, 32, 64, 128, 256, 512};
  for (double alpha : {4.0, 8.0}) {
    const Problem p = make_problem(1024, 1024, 64, 64, 1, 3);
    const Index n = p.n_q;
    const Inputs in = testing::local_decay_inputs(p, alpha, 63);
    const auto ref =
        reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax, all_rows(n));
    double decay_length = 0;
    for (Index h = 0; h < p.heads; ++h) {
      const RowMatrixD weights = exact_weights(in, p, 0, h);
      for (Index i = 0; i < n; ++i) {
        for (Index j = 0; j < n; ++j) {
          decay_length += weights(i, j) * double(std::abs(i - j)) / double(n * p.heads);
        }
      }
    }
    RecordProperty("alpha" + std::to_string(int(alpha)) + "_decay_length",
                   std::to_string(decay_length));
    std::vector<double> error;
    for (Index block : blocks) {
      const Tensor4 out = run_variant("pooled", {{"block", block}}, p, in);
      const ErrorMetrics m = compute_error(out, in.v, ref);
      error.push_back(m.rel_fro_mean);
      RecordProperty("alpha" + std::to_string(int(alpha)) + "_b" + std::to_string(block),
                     std::to_string(m.rel_fro_mean));
      EXPECT_LT(m.rel_uniform, 1.0) << "alpha=" << alpha << " b=" << block;
      if (block == n / 2) {
        EXPECT_LE(m.max_abs, exact_tolerance(p, in)) << "two blocks are exact";
      }
    }
    Index checked = 0;
    for (std::size_t r = 0; r + 1 < blocks.size(); ++r) {
      if (double(blocks[r]) < decay_length) continue;
      ++checked;
      EXPECT_LE(error[r + 1], error[r])
          << "alpha=" << alpha << " b=" << blocks[r + 1] << " decay length " << decay_length;
    }
    EXPECT_GE(checked, 1) << "alpha=" << alpha << ": no block past the decay length "
                          << decay_length;
  }
}

TEST(Pooled, DefaultBlockIsSqrtNRoundedToAPowerOfTwo) {
  for (auto [n, expected] :
       {std::pair<Index, Index>{4096, 64}, {16384, 128}, {200, 16}, {5000, 64}, {3, 2}, {1, 1}}) {
    const auto attn = make_attention("pooled", make_problem(n, n, 4, 4));
    EXPECT_EQ(attn->resolved_params().at("block"), expected) << "n=" << n;
  }
}

TEST(Pooled, BadBlockSizesAreRejectedClearly) {
  const Problem p = make_problem(100, 100, 8, 8);
  testing::expect_rejected("pooled", {{"block", 0}}, p, "block", "0");
  testing::expect_rejected("pooled", {{"block", 101}}, p, "block", "101");
  testing::expect_rejected("pooled", {}, make_problem(100, 80, 8, 8), "n_q", "100");
}

}  // namespace
}  // namespace attnbench
