// The generic block-sparse layout and kernel (attention/block_sparse.h): builder normalisation,
// every block kind, dilated components, global rows and columns, and the kernel against exact
// attention restricted to the layout's dense mask on random layouts and awkward sizes.
#include <gtest/gtest.h>

#include "attention/random.h"
#include "tests/sparse/sparse_test_util.h"

namespace attnbench {
namespace {

using Entry = BlockSparseBuilder::Entry;
using Layouts = BlockSparseAttention::Layouts;
using sparse_test::Pos;

// Runs the kernel on hand-made layouts.
class LayoutAttention final : public BlockSparseAttention {
 public:
  LayoutAttention(const Problem& p, Layouts layouts)
      : BlockSparseAttention("layout_test", p, ParamSet("layout_test", Json::object())) {
    set_layouts(std::move(layouts));
  }
};

Tensor4 run_layouts(const Problem& p, const testing::Inputs& in, const Layouts& layouts) {
  LayoutAttention attn(p, layouts);
  Tensor4 out(p.batch, p.heads, p.n_q, p.d_v);
  attn.forward(in.q, in.k, in.v, out, in.mask);
  return out;
}

// Kernel output against exact attention restricted to each head's layout mask.
void expect_kernel_follows_layout(const Problem& p, const testing::Inputs& in,
                                  const Layouts& layouts, const std::string& label) {
  std::vector<std::vector<std::uint8_t>> masks;
  for (const auto& lay : layouts) masks.push_back(lay->to_dense_mask());
  const sparse_test::Def def = [&](Index i, Index j, Index h) {
    return masks[masks.size() == 1 ? 0 : h][i * p.n_k + j] != 0;
  };
  const Tensor4 out = run_layouts(p, in, layouts);
  const ElementMask extra = [&](Index bh, Index i, Index j) { return def(i, j, bh % p.heads); };
  const auto ref = reference_attention(in.q, in.k, in.v, in.mask, p, ReferenceKind::kSoftmax,
                                       all_rows(p.n_q), extra);
  EXPECT_LE(compute_error(out, in.v, ref).max_abs, testing::exact_tolerance(p, in)) << label;
  EXPECT_TRUE(testing::all_finite(out)) << label;
}

TEST(BlockSparseBuilder, SortsClipsAndMergesEntries) {
  BlockSparseBuilder builder(40, 40, 8, false);  // 5 block rows
  builder.add_component(1, [](Index t, std::vector<Entry>& out) {
    if (t != 2) return;
    out.push_back({3, BlockKind::kBand, -2, 4});
    out.push_back({1, BlockKind::kDiagCausal, 0, 0});
    out.push_back({3, BlockKind::kFull, 0, 0});        // FULL absorbs the band
    out.push_back({1, BlockKind::kDiagCausal, 0, 0});  // identical: merged
    out.push_back({-1, BlockKind::kFull, 0, 0});       // outside the grid: dropped
    out.push_back({5, BlockKind::kFull, 0, 0});
  });
  const BlockSparseLayout lay = builder.build();
  const auto& c = lay.components[0];
  ASSERT_EQ(c.row_blocks(), 5);
  EXPECT_EQ(c.row_ptr, (std::vector<Index>{0, 0, 0, 2, 2, 2}));
  EXPECT_EQ(c.col_idx, (std::vector<std::int32_t>{1, 3}));
  EXPECT_EQ(c.kind[0], BlockKind::kDiagCausal);
  EXPECT_EQ(c.kind[1], BlockKind::kFull);
}

TEST(BlockSparseBuilder, RejectsConflictingKindsAndBadGlobals) {
  BlockSparseBuilder builder(16, 16, 4, false);
  EXPECT_THROW(builder.add_component(1,
                                     [](Index, std::vector<Entry>& out) {
                                       out.push_back({0, BlockKind::kBand, 0, 1});
                                       out.push_back({0, BlockKind::kBand, 0, 2});
                                     }),
               std::logic_error);
  EXPECT_THROW(builder.set_global_cols({3, 16}), std::logic_error);
  EXPECT_THROW(builder.set_global_rows({-1}), std::logic_error);
}

TEST(BlockSparseLayout, ValidateCatchesUnsortedColumns) {
  BlockSparseBuilder builder(16, 16, 4, false);
  builder.add_component(1, [](Index t, std::vector<Entry>& out) {
    out.push_back({t, BlockKind::kFull, 0, 0});
    if (t + 1 < 4) out.push_back({t + 1, BlockKind::kFull, 0, 0});
  });
  BlockSparseLayout lay = builder.build();
  EXPECT_NO_THROW(lay.validate());
  std::swap(lay.components[0].col_idx[0], lay.components[0].col_idx[1]);
  EXPECT_THROW(lay.validate(), std::logic_error);
}

// Bands of every shape: the listed blocks' kinds reproduce lo <= x - y <= hi exactly, blocks
// wholly inside are FULL, and blocks wholly outside are not listed.
TEST(BlockSparseLayout, BandBlocksReproduceTheBand) {
  for (Index n : {1, 9, 33}) {
    for (Index b : {1, 4, 8}) {
      for (auto [lo, hi] : std::vector<std::pair<Index, Index>>{{0, 0},
                                                                {-3, 5},
                                                                {0, kBandInf},
                                                                {-kBandInf, 2},
                                                                {2, 7},
                                                                {-9, -1},
                                                                {4, 3},
                                                                {-kBandInf, kBandInf}}) {
        for (bool causal : {false, true}) {
          BlockSparseBuilder builder(n, n, b, causal);
          const Index nb = builder.grid_blocks(1);
          builder.add_component(1, [&](Index t, std::vector<Entry>& out) {
            append_band_blocks(t, b, nb, lo, hi, out);
          });
          const BlockSparseLayout lay = builder.build();
          const std::string label = "n=" + std::to_string(n) + " b=" + std::to_string(b) +
                                    " band [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                    "]" + (causal ? " causal" : "");
          Problem p = testing::make_problem(n, n, 4, 4, 1, 1, causal);
          sparse_test::expect_layouts_match(
              {std::make_shared<const BlockSparseLayout>(lay)}, p,
              [&](Index i, Index j, Index) {
                const Index diff = i - j;
                return (!causal || j <= i) && (lo == -kBandInf || diff >= lo) &&
                       (hi == kBandInf || diff <= hi);
              },
              label);
          const auto& c = lay.components[0];
          for (Index t = 0; t < c.row_blocks(); ++t) {
            for (Index k = c.row_ptr[t]; k < c.row_ptr[t + 1]; ++k) {
              const Index d_min = (t - c.col_idx[k]) * b - (b - 1);
              const Index d_max = (t - c.col_idx[k]) * b + (b - 1);
              const bool inside =
                  (lo == -kBandInf || d_min >= lo) && (hi == kBandInf || d_max <= hi);
              EXPECT_EQ(c.kind[k] == BlockKind::kFull, inside)
                  << label << " block " << t << "," << c.col_idx[k];
            }
          }
        }
      }
    }
  }
}

// Arbitrary per-row intervals: FULL, band and bitmask kinds together reproduce them; identical
// bitmasks share an id.
TEST(BlockSparseLayout, IntervalBlocksReproduceAnyIntervals) {
  Rng rng(11);
  for (Index n : {5, 31, 64, 70}) {
    for (Index b : {4, 16}) {
      std::vector<std::pair<Index, Index>> rows(n);
      for (auto& r : rows) {
        const Index a = Index(rng.uniform_int(n + 4)) - 2;
        r = {a, a + Index(rng.uniform_int(n / 2 + 2)) - 1};
      }
      BlockSparseBuilder builder(n, n, b, false);
      builder.add_component(1, [&](Index t, std::vector<Entry>& out) {
        append_interval_blocks(
            builder, t, n, [&](Index x) { return rows[x]; }, out);
      });
      const BlockSparseLayout lay = builder.build();
      Problem p = testing::make_problem(n, n, 4, 4, 1, 1);
      sparse_test::expect_layouts_match(
          {std::make_shared<const BlockSparseLayout>(lay)}, p,
          [&](Index i, Index j, Index) { return j >= rows[i].first && j < rows[i].second; },
          "intervals n=" + std::to_string(n) + " b=" + std::to_string(b));
    }
  }
  // Segments of 100 over 64-blocks repeat every lcm(64, 100) = 1600 tokens: identical bitmasks
  // share an id, so 4x the length adds no new masks but those of the ragged end.
  auto bitmasks = [](Index n) {
    BlockSparseBuilder builder(n, n, 64, false);
    builder.add_component(1, [&](Index t, std::vector<Entry>& out) {
      append_interval_blocks(
          builder, t, n,
          [](Index x) {
            return std::pair<Index, Index>{x / 100 * 100, x / 100 * 100 + 100};
          },
          out);
    });
    return builder.build().bitmasks();
  };
  EXPECT_GT(bitmasks(1600), 0);
  EXPECT_EQ(bitmasks(6400), bitmasks(1600));
}

// Random layouts of every kind, with global rows and columns overlapping the blocks.
Layouts random_layouts(const Problem& p, Index b, std::uint64_t seed, bool per_head, bool globals) {
  Layouts out;
  for (Index h = 0; h < (per_head ? p.heads : 1); ++h) {
    Rng rng(seed, h);
    BlockSparseBuilder builder(p.n_q, p.n_k, b, p.causal);
    const Index nb = builder.grid_blocks(1);
    std::vector<std::vector<Entry>> rows(nb);
    for (Index t = 0; t < nb; ++t) {
      for (Index c = 0; c < nb; ++c) {
        if (rng.uniform() > 0.5) continue;
        switch (rng.uniform_int(4)) {
          case 0:
            rows[t].push_back({c, BlockKind::kFull, 0, 0});
            break;
          case 1:
            rows[t].push_back({c, BlockKind::kDiagCausal, 0, 0});
            break;
          case 2: {
            const auto lo = static_cast<std::int32_t>(rng.uniform_int(4 * b)) - 2 * int(b);
            rows[t].push_back({c, BlockKind::kBand, lo, lo + int(rng.uniform_int(2 * b))});
            break;
          }
          default: {
            std::vector<std::uint8_t> bits(b * b);
            for (auto& bit : bits) bit = rng.uniform() < 0.4;
            rows[t].push_back({c, BlockKind::kBitmask, builder.add_bitmask(bits), 0});
          }
        }
      }
    }
    builder.add_component(1, [&](Index t, std::vector<Entry>& e) {
      e.insert(e.end(), rows[t].begin(), rows[t].end());
    });
    if (globals) {
      std::vector<Index> g_rows, g_cols;
      for (Index x = 0; x < std::max(p.n_q, p.n_k); ++x) {
        if (rng.uniform() < 0.08) g_rows.push_back(x);
        if (rng.uniform() < 0.08) g_cols.push_back(x);
      }
      builder.set_global_rows(g_rows);
      builder.set_global_cols(g_cols);
    }
    out.push_back(std::make_shared<const BlockSparseLayout>(builder.build()));
  }
  return out;
}

TEST(BlockSparseKernel, RandomLayoutsMatchMaskedReference) {
  std::uint64_t seed = 100;
  for (auto [n_q, n_k] : std::vector<std::pair<Index, Index>>{
           {1, 1}, {7, 7}, {37, 37}, {100, 100}, {37, 100}, {100, 37}}) {
    for (Index b : {4, 16}) {
      for (bool causal : {false, true}) {
        for (bool padded : {false, true}) {
          for (bool globals : {false, true}) {
            const Problem p = testing::make_problem(n_q, n_k, 8, 5, 2, 2, causal, padded);
            const auto in = testing::make_inputs(p, ++seed);
            const Layouts layouts = random_layouts(p, b, seed, /*per_head=*/seed % 2, globals);
            expect_kernel_follows_layout(
                p, in, layouts,
                p.to_string() + " b=" + std::to_string(b) + (globals ? " globals" : ""));
          }
        }
      }
    }
  }
}

// Two disjoint components, one dilated: a band 0 <= x - y < 3 and, on each residue class mod 3,
// X - Y >= 1 (the strided "merged" shape), plus global rows and columns.
TEST(BlockSparseKernel, DilatedComponentsAndGlobalsMatchMaskedReference) {
  for (auto [n_q, n_k] : std::vector<std::pair<Index, Index>>{{50, 50}, {23, 50}, {50, 23}}) {
    for (Index b : {2, 8}) {
      for (bool causal : {false, true}) {
        const Problem p = testing::make_problem(n_q, n_k, 8, 6, 2, 2, causal, true);
        const auto in = testing::make_inputs(p, 7 + b + n_q);
        BlockSparseBuilder builder(n_q, n_k, b, causal);
        builder.add_component(1, [&](Index t, std::vector<Entry>& out) {
          append_band_blocks(t, b, builder.grid_blocks(1), 0, 2, out);
        });
        builder.add_component(3, [&](Index t, std::vector<Entry>& out) {
          append_band_blocks(t, b, builder.grid_blocks(3), 1, kBandInf, out);
        });
        builder.set_global_rows({4, 31});
        builder.set_global_cols({0, 13, 14, 40});
        const auto lay = std::make_shared<const BlockSparseLayout>(builder.build());
        const Pos pos(p);
        const std::vector<Index> g_rows{4, 31}, g_cols{0, 13, 14, 40};
        auto in_list = [](const std::vector<Index>& v, Index x) {
          return std::find(v.begin(), v.end(), x) != v.end();
        };
        const std::string label = p.to_string() + " b=" + std::to_string(b);
        sparse_test::expect_layouts_match(
            {lay}, p,
            [&](Index i, Index j, Index) {
              const Index x = pos.x(i), y = pos.y(j), diff = x - y;
              if (causal && y > x) return false;
              return in_list(g_rows, x) || in_list(g_cols, y) || (diff >= 0 && diff < 3) ||
                     (diff >= 3 && diff % 3 == 0);
            },
            label);
        expect_kernel_follows_layout(p, in, {lay}, label);
      }
    }
  }
}

TEST(BlockSparseWork, PatternScoresCountTheMaskAndCostFollowsComputedScores) {
  std::uint64_t seed = 500;
  for (bool causal : {false, true}) {
    for (auto [n_q, n_k] : std::vector<std::pair<Index, Index>>{{61, 61}, {40, 61}}) {
      const Problem p = testing::make_problem(n_q, n_k, 8, 4, 3, 2, causal);
      const Layouts layouts = random_layouts(p, 8, ++seed, true, true);
      double allowed = 0;
      for (const auto& lay : layouts) {
        for (auto m : lay->to_dense_mask()) allowed += m;
      }
      const BlockSparseWork w = block_sparse_work(p, layouts, true);
      EXPECT_DOUBLE_EQ(w.pattern_scores, allowed * double(p.batch)) << p.to_string();
      EXPECT_GE(w.computed_scores, w.pattern_scores);
      const Cost c = block_sparse_cost(p, layouts, 2);
      EXPECT_DOUBLE_EQ(c.flops, 2.0 * double(p.d + p.d_v) * w.computed_scores);
      double layout_bytes = 0;
      for (const auto& lay : layouts) layout_bytes += lay->memory_bytes();
      EXPECT_GT(c.memory_bytes, layout_bytes);
    }
  }
}

// A row with every key padded, and padded keys inside global columns and global rows.
TEST(BlockSparseKernel, FullyPaddedBatchEntryGivesZeros) {
  const Problem p = testing::make_problem(45, 45, 8, 4, 2, 2, false, true);
  auto in = testing::make_inputs(p, 3);
  for (Index j = 0; j < p.n_k; ++j) in.mask.set(1, j, false);
  const Layouts layouts = random_layouts(p, 8, 77, false, true);
  const Tensor4 out = run_layouts(p, in, layouts);
  for (Index h = 0; h < p.heads; ++h) EXPECT_EQ(out.head(1, h).cwiseAbs().maxCoeff(), 0.0f);
  expect_kernel_follows_layout(p, in, layouts, "padded");
}

}  // namespace
}  // namespace attnbench
