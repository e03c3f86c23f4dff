// The double-precision reference against a brute-force loop, and the invariances of exact
// attention (reference/variants.md §1).
#include <gtest/gtest.h>

#include <cmath>

#include "attention/reference.h"
#include "tests/testing/test_util.h"

namespace attnbench {
namespace {

using testing::make_inputs;
using testing::make_problem;

// Brute force in long double: every row, every key, two passes, no tiling.
struct Brute {
  std::vector<std::vector<long double>> out;
  std::vector<long double> lse, entropy, sum_p2, max_w;
  std::vector<Index> allowed;
};

Brute brute_force(ConstMatRef q, ConstMatRef k, ConstMatRef v, std::span<const std::uint8_t> valid,
                  const Problem& p, bool shared) {
  Brute b;
  const long double scale = p.effective_scale();
  for (Index i = 0; i < p.n_q; ++i) {
    std::vector<long double> s(p.n_k, -INFINITY);
    std::vector<bool> ok(p.n_k, false);
    Index count = 0;
    for (Index j = 0; j < p.n_k; ++j) {
      ok[j] = (valid.empty() || valid[j]) && p.allowed(i, j) && !(shared && i == j);
      count += ok[j];
    }
    if (shared && count == 0 && (valid.empty() || valid[i]) && p.allowed(i, i)) {
      ok[i] = true;
      count = 1;
    }
    long double mx = -INFINITY;
    for (Index j = 0; j < p.n_k; ++j) {
      if (!ok[j]) continue;
      long double dot = 0, norm = 0;
      for (Index c = 0; c < p.d; ++c) {
        const long double kv = shared ? q(j, c) : k(j, c);
        dot += (long double)q(i, c) * kv;
        norm += kv * kv;
      }
      if (shared && norm > 0) dot /= std::sqrt(norm);
      s[j] = scale * dot;
      mx = std::max(mx, s[j]);
    }
    std::vector<long double> o(p.d_v, 0.0L);
    long double z = 0;
    for (Index j = 0; j < p.n_k; ++j) {
      if (ok[j]) z += std::exp(s[j] - mx);
    }
    long double ent = 0, p2 = 0, mw = 0;
    for (Index j = 0; j < p.n_k; ++j) {
      if (!ok[j]) continue;
      const long double w = std::exp(s[j] - mx) / z;
      for (Index c = 0; c < p.d_v; ++c) o[c] += w * v(j, c);
      if (w > 0) ent -= w * std::log(w);
      p2 += w * w;
      mw = std::max(mw, w);
    }
    b.out.push_back(o);
    b.lse.push_back(count ? mx + std::log(z) : -INFINITY);
    b.entropy.push_back(ent);
    b.sum_p2.push_back(p2);
    b.max_w.push_back(mw);
    b.allowed.push_back(count);
  }
  return b;
}

void expect_matches_brute(const Problem& p, std::uint64_t seed, ReferenceKind kind) {
  const auto in = make_inputs(p, seed, 2.0);
  const auto rows = all_rows(p.n_q);
  const auto ref = reference_attention(in.q, in.k, in.v, in.mask, p, kind, rows);
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      const auto& r = ref[b * p.heads + h];
      const Brute bf = brute_force(in.q.head(b, h), in.k.head(b, h), in.v.head(b, h),
                                   in.mask.row(b), p, kind == ReferenceKind::kSharedQkSoftmax);
      for (Index i = 0; i < p.n_q; ++i) {
        ASSERT_EQ(r.allowed[i], bf.allowed[i]) << "row " << i;
        for (Index c = 0; c < p.d_v; ++c) {
          ASSERT_NEAR(r.out(i, c), double(bf.out[i][c]), 1e-12) << "row " << i << " col " << c;
        }
        if (bf.allowed[i] == 0) {
          EXPECT_EQ(r.lse[i], -INFINITY);
          continue;
        }
        EXPECT_NEAR(r.lse[i], double(bf.lse[i]), 1e-11);
        EXPECT_NEAR(r.entropy[i], double(bf.entropy[i]), 1e-10);
        EXPECT_NEAR(r.sum_p2[i], double(bf.sum_p2[i]), 1e-12);
        EXPECT_NEAR(r.max_weight[i], double(bf.max_w[i]), 1e-12);
      }
    }
  }
}

TEST(Reference, MatchesBruteForce) {
  // n_k spans several key tiles (512) with a ragged last one.
  expect_matches_brute(make_problem(70, 1100, 16, 8, 1, 2), 1, ReferenceKind::kSoftmax);
}

TEST(Reference, MatchesBruteForceCausalBottomRight) {
  expect_matches_brute(make_problem(45, 45, 8, 5, 1, 1, true), 2, ReferenceKind::kSoftmax);
  expect_matches_brute(make_problem(30, 70, 8, 5, 1, 1, true), 3, ReferenceKind::kSoftmax);
  // n_q > n_k: the first n_q - n_k rows see nothing.
  expect_matches_brute(make_problem(70, 30, 8, 5, 1, 1, true), 4, ReferenceKind::kSoftmax);
}

TEST(Reference, MatchesBruteForceWithPadding) {
  expect_matches_brute(make_problem(33, 600, 8, 4, 3, 1, false, true), 5, ReferenceKind::kSoftmax);
  expect_matches_brute(make_problem(40, 40, 8, 4, 2, 1, true, true), 6, ReferenceKind::kSoftmax);
}

TEST(Reference, SharedQkMatchesBruteForce) {
  expect_matches_brute(make_problem(50, 50, 8, 4, 1, 2), 7, ReferenceKind::kSharedQkSoftmax);
  // Causal: row 0 has only itself and must attend to itself.
  expect_matches_brute(make_problem(50, 50, 8, 4, 1, 1, true), 8, ReferenceKind::kSharedQkSoftmax);
}

TEST(Reference, SharedQkRowZeroCausalIsSelf) {
  const Problem p = make_problem(6, 6, 4, 3, 1, 1, true);
  const auto in = make_inputs(p, 9);
  const auto rows = all_rows(p.n_q);
  const auto ref =
      reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSharedQkSoftmax, rows);
  for (Index c = 0; c < 3; ++c) EXPECT_DOUBLE_EQ(ref[0].out(0, c), in.v.at(0, 0, 0, c));
}

TEST(Reference, SubsetOfRowsEqualsTheSameRowsOfAll) {
  const Problem p = make_problem(300, 300, 8, 8, 1, 2, true);
  const auto in = make_inputs(p, 10);
  const auto all =
      reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax, all_rows(p.n_q));
  const std::vector<Index> rows = {0, 7, 64, 65, 199, 299};
  const auto sub = reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax, rows);
  for (std::size_t t = 0; t < rows.size(); ++t) {
    // The same arithmetic up to the GEMM's blocking, which depends on how many rows are taken.
    EXPECT_LE((sub[1].out.row(t) - all[1].out.row(rows[t])).norm(),
              1e-14 * all[1].out.row(rows[t]).norm());
  }
  EXPECT_THROW(reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax,
                                   std::vector<Index>{300}),
               std::invalid_argument);
}

TEST(Reference, FullyMaskedRowIsZero) {
  Problem p = make_problem(5, 8, 4, 3, 2, 1, false, true);
  auto in = make_inputs(p, 11);
  for (Index j = 0; j < p.n_k; ++j) in.mask.set(1, j, false);
  const auto ref =
      reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax, all_rows(p.n_q));
  EXPECT_EQ(ref[1].out.norm(), 0.0);
  EXPECT_EQ(ref[1].lse[0], -INFINITY);
  EXPECT_GT(ref[0].out.norm(), 0.0);
}

TEST(Reference, Invariances) {
  const Problem p = make_problem(20, 31, 8, 6, 1, 1);
  auto in = make_inputs(p, 12);
  const auto rows = all_rows(p.n_q);
  const auto base =
      reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax, rows)[0];

  // Jointly permuting keys and values leaves O unchanged.
  auto perm = in;
  for (Index j = 0; j < p.n_k; ++j) {
    const Index src = (j * 7 + 3) % p.n_k;
    perm.k.head(0, 0).row(j) = in.k.head(0, 0).row(src);
    perm.v.head(0, 0).row(j) = in.v.head(0, 0).row(src);
  }
  const auto permuted =
      reference_attention(perm.q, perm.k, perm.v, perm.mask, p, ReferenceKind::kSoftmax, rows)[0];
  EXPECT_LT((permuted.out - base.out).cwiseAbs().maxCoeff(), 1e-12);

  // Adding one vector to every key shifts each row's logits by a constant.
  auto shifted = in;
  for (Index j = 0; j < p.n_k; ++j) {
    for (Index c = 0; c < p.d; ++c) shifted.k.at(0, 0, j, c) += 0.25f * float(c % 3) - 0.5f;
  }
  const auto moved = reference_attention(shifted.q, shifted.k, shifted.v, shifted.mask, p,
                                         ReferenceKind::kSoftmax, rows)[0];
  EXPECT_LT((moved.out - base.out).cwiseAbs().maxCoeff(), 1e-6);

  // V = ones gives ones.
  auto ones = in;
  std::fill(ones.v.storage().begin(), ones.v.storage().end(), 1.0f);
  const auto one =
      reference_attention(ones.q, ones.k, ones.v, ones.mask, p, ReferenceKind::kSoftmax, rows)[0];
  EXPECT_LT((one.out.array() - 1.0).abs().maxCoeff(), 1e-14);

  // A huge scale with one dominant key per row picks that key's value.
  auto sharp = in;
  for (float& x : sharp.q.storage()) x *= 1e4f;
  const auto argmax = reference_attention(sharp.q, sharp.k, sharp.v, sharp.mask, p,
                                          ReferenceKind::kSoftmax, rows)[0];
  for (Index i = 0; i < p.n_q; ++i) {
    Index best = 0;
    (in.k.head(0, 0) * in.q.head(0, 0).row(i).transpose()).maxCoeff(&best);
    EXPECT_LT((argmax.out.row(i) - in.v.head(0, 0).row(best).cast<double>()).norm(), 1e-6);
    EXPECT_NEAR(argmax.max_weight[i], 1.0, 1e-9);
  }
}

TEST(Reference, ElementMaskRestrictsTheAllowedSet) {
  // A band mask |i - j| <= 2 must equal brute force over the same band.
  const Problem p = make_problem(40, 40, 8, 4, 1, 2);
  const auto in = make_inputs(p, 13);
  const ElementMask band = [](Index, Index i, Index j) { return std::abs(i - j) <= 2; };
  const auto ref = reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax,
                                       all_rows(p.n_q), band);
  for (Index h = 0; h < p.heads; ++h) {
    const auto k = in.k.head(0, h);
    for (Index i = 0; i < p.n_q; ++i) {
      EXPECT_EQ(ref[h].allowed[i], std::min<Index>(i, 2) + std::min<Index>(p.n_k - 1 - i, 2) + 1);
      std::vector<double> w;
      double z = 0;
      Eigen::VectorXd o = Eigen::VectorXd::Zero(p.d_v);
      for (Index j = std::max<Index>(0, i - 2); j <= std::min<Index>(p.n_k - 1, i + 2); ++j) {
        const double s = p.effective_scale() *
                         in.q.head(0, h).row(i).cast<double>().dot(k.row(j).cast<double>());
        z += std::exp(s);
        o += std::exp(s) * in.v.head(0, h).row(j).cast<double>().transpose();
      }
      EXPECT_LT((ref[h].out.row(i).transpose() - o / z).norm(), 1e-12);
    }
  }
}

TEST(Reference, SelectRowsIsSeededSortedAndDistinct) {
  EXPECT_EQ(select_rows(100, 4096, 64, 1).size(), 100u);
  const auto a = select_rows(100000, 4096, 512, 3);
  const auto b = select_rows(100000, 4096, 512, 3);
  const auto c = select_rows(100000, 4096, 512, 4);
  ASSERT_EQ(a.size(), 512u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (std::size_t i = 1; i < a.size(); ++i) EXPECT_LT(a[i - 1], a[i]);
  EXPECT_LT(a.back(), 100000);
}

}  // namespace
}  // namespace attnbench
