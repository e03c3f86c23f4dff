// Helpers of the sparse tests: element-level pattern definitions are written in each test,
// independently of the variants; these helpers compare a layout's dense mask with such a
// definition and the kernel's output with exact attention restricted to it.
#pragma once

#include <functional>
#include <string>

#include "attention/block_sparse.h"
#include "tests/testing/test_util.h"
#include "variants/sparse/patterns.h"

namespace attnbench::sparse_test {

// def(i, j, head): query i may see key j (pattern and causal mask; not key padding).
using Def = std::function<bool(Index i, Index j, Index head)>;

// Grid positions (bottom-right alignment): x = i + L - n_q, y = j + L - n_k.
struct Pos {
  Index L, qs, ks;
  explicit Pos(const Problem& p) : L(std::max(p.n_q, p.n_k)), qs(L - p.n_q), ks(L - p.n_k) {}
  Index x(Index i) const { return i + qs; }
  Index y(Index j) const { return j + ks; }
};

// Every head's layout: its dense mask equals def, and no pair is counted twice.
inline void expect_layouts_match(const BlockSparseAttention::Layouts& layouts, const Problem& p,
                                 const Def& def, const std::string& label) {
  ASSERT_TRUE(layouts.size() == 1 || static_cast<Index>(layouts.size()) == p.heads) << label;
  for (Index h = 0; h < p.heads; ++h) {
    const BlockSparseLayout& lay = *layouts[layouts.size() == 1 ? 0 : h];
    ASSERT_NO_THROW(lay.validate()) << label;
    const auto count = lay.to_count_mask();
    Index mismatches = 0, doubles = 0;
    std::string first;
    for (Index i = 0; i < p.n_q; ++i) {
      for (Index j = 0; j < p.n_k; ++j) {
        const int c = count[i * p.n_k + j];
        doubles += c > 1;
        if ((c > 0) != def(i, j, h)) {
          if (mismatches++ == 0) {
            first = "(" + std::to_string(i) + ", " + std::to_string(j) + "): layout " +
                    std::to_string(c) + ", definition " + std::to_string(def(i, j, h));
          }
        }
      }
    }
    EXPECT_EQ(mismatches, 0) << label << " head " << h << ", first at " << first;
    EXPECT_EQ(doubles, 0) << label << " head " << h << ": pairs counted more than once";
  }
}

// The variant's output equals exact attention restricted to def (and to causal and padding).
inline void expect_kernel_matches(const std::string& variant, const Json& params, const Problem& p,
                                  const testing::Inputs& in, const Def& def,
                                  const std::string& label) {
  const Tensor4 out = testing::run_variant(variant, params, p, in);
  ASSERT_TRUE(testing::all_finite(out)) << label;
  const auto rows = all_rows(p.n_q);
  const ElementMask extra = [&](Index bh, Index i, Index j) { return def(i, j, bh % p.heads); };
  const auto ref =
      reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax, rows, extra);
  const ErrorMetrics m = compute_error(out, in.v, ref);
  EXPECT_LE(m.max_abs, testing::exact_tolerance(p, in)) << label;
  // Rows the reference leaves empty must be exact zeros.
  for (Index bh = 0; bh < p.batch * p.heads; ++bh) {
    for (std::size_t r = 0; r < rows.size(); ++r) {
      if (ref[bh].allowed[r] != 0) continue;
      const auto row = out.head(bh / p.heads, bh % p.heads).row(rows[r]);
      EXPECT_EQ(row.cwiseAbs().maxCoeff(), 0.0f) << label << " empty row " << rows[r];
    }
  }
}

// The variant's output equals unrestricted exact attention (an exact limit).
inline void expect_exact(const std::string& variant, const Json& params, const Problem& p,
                         const testing::Inputs& in, const std::string& label) {
  const Tensor4 out = testing::run_variant(variant, params, p, in);
  const ErrorMetrics m = testing::error_vs_reference(out, p, in);
  EXPECT_LE(m.max_abs, testing::exact_tolerance(p, in)) << label;
}

inline std::string describe(const std::string& variant, const Json& params, const Problem& p) {
  return variant + " " + params.dump() + " " + p.to_string();
}

}  // namespace attnbench::sparse_test
