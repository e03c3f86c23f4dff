// Every sparse pattern against its element-level definition, written here independently of the
// variants: the layout's dense mask equals the definition (no pair counted twice), the
// variant's `allows` agrees, and the kernel equals exact attention restricted to the
// definition. Sizes include n not divisible by the block, n_q != n_k, key padding and causal.
#include <gtest/gtest.h>

#include "tests/sparse/sparse_test_util.h"

namespace attnbench {
namespace {

using sparse_test::Def;
using sparse_test::Pos;

template <typename Pattern>
void check_pattern(const Json& params, const Problem& p, const Def& def, std::uint64_t seed) {
  const std::string label = sparse_test::describe(Pattern::kName, params, p);
  const ParamSet s = resolve_variant_params(Pattern::kName, params);
  const Pattern pattern = Pattern::from_params(p, s);
  sparse_test::expect_layouts_match(pattern.layouts(), p, def, label);
  Index disagree = 0;
  for (Index h = 0; h < p.heads; ++h) {
    for (Index i = 0; i < p.n_q; ++i) {
      for (Index j = 0; j < p.n_k; ++j) disagree += pattern.allows(i, j, h) != def(i, j, h);
    }
  }
  EXPECT_EQ(disagree, 0) << label << ": allows() differs from the definition";
  const auto in = testing::make_inputs(p, seed);
  sparse_test::expect_kernel_matches(Pattern::kName, params, p, in, def, label);
}

std::vector<std::pair<Index, Index>> sizes(bool unequal) {
  std::vector<std::pair<Index, Index>> out{{1, 1},   {7, 7},     {64, 64},
                                           {65, 65}, {150, 150}, {257, 257}};
  if (unequal) {
    out.push_back({65, 200});
    out.push_back({200, 65});
  }
  return out;
}

TEST(WindowPattern, MatchesDefinition) {
  std::uint64_t seed = 1;
  for (auto [n_q, n_k] : sizes(true)) {
    for (Index width : {0, 5, 37, 300}) {
      for (Index dilation : {1, 3}) {
        for (bool causal : {false, true}) {
          const Problem p = testing::make_problem(n_q, n_k, 16, 8, 2, 2, causal, seed % 2);
          const Pos pos(p);
          check_pattern<sparse::WindowPattern>(
              {{"width", width}, {"dilation", dilation}}, p,
              [&](Index i, Index j, Index) {
                const Index diff = pos.x(i) - pos.y(j);
                if (causal && diff < 0) return false;
                return std::abs(diff) <= width * dilation && diff % dilation == 0;
              },
              ++seed);
        }
      }
    }
  }
}

TEST(LocalBlocksPattern, MatchesDefinition) {
  std::uint64_t seed = 100;
  // 64: aligned FULL blocks; 24 and 100: one tile per segment; 5: several segments per tile;
  // 150: 64-tiles with bitmasks where segments straddle them.
  for (Index block : {64, 24, 100, 5, 150}) {
    for (auto [n_q, n_k] : sizes(block == 24)) {
      for (bool causal : {false, true}) {
        for (Index back : {0, 1, 2}) {
          for (Index fwd : {0, 1}) {
            if (causal && fwd > 0) continue;
            for (bool exact : {false, true}) {
              if ((back + fwd + exact + n_q) % 2 && block != 150) continue;  // keep it quick
              const Problem p = testing::make_problem(n_q, n_k, 8, 8, 1, 2, causal, seed % 3 == 0);
              const Pos pos(p);
              check_pattern<sparse::LocalBlocksPattern>(
                  {{"block", block},
                   {"look_backward", back},
                   {"look_forward", fwd},
                   {"exact_window", exact}},
                  p,
                  [&](Index i, Index j, Index) {
                    const Index x = pos.x(i), y = pos.y(j);
                    if (causal && y > x) return false;
                    const Index tq = x / block, tk = y / block;
                    if (tk < tq - back || tk > tq + fwd) return false;
                    return !exact || (x - y <= block * back && y - x <= block * fwd);
                  },
                  ++seed);
            }
          }
        }
      }
    }
  }
}

TEST(StridedPattern, MatchesDefinition) {
  std::uint64_t seed = 200;
  for (auto [n_q, n_k] : sizes(true)) {
    for (Index stride : {1, 4, 7, 16}) {
      for (const std::string mode : {"local", "stride", "merged"}) {
        const Problem p = testing::make_problem(n_q, n_k, 8, 8, 1, 2, true, seed % 2);
        const Pos pos(p);
        check_pattern<sparse::StridedPattern>(
            {{"stride", stride}, {"mode", mode}}, p,
            [&](Index i, Index j, Index) {
              const Index diff = pos.x(i) - pos.y(j);
              if (diff < 0) return false;
              const bool local = diff < stride, strided = diff % stride == 0;
              return mode == "local" ? local : mode == "stride" ? strided : local || strided;
            },
            ++seed);
      }
    }
  }
}

TEST(StridedPattern, AutoStrideIsSqrtN) {
  const Problem p = testing::make_problem(1000, 1000, 8, 8, 1, 1, true);
  auto attn = make_attention("strided", p);
  EXPECT_EQ(attn->resolved_params().at("stride"), 32);
}

TEST(FixedPattern, MatchesDefinition) {
  std::uint64_t seed = 300;
  for (auto [block, summary] :
       std::vector<std::pair<Index, Index>>{{16, 4}, {20, 3}, {64, 16}, {150, 10}, {7, 7}}) {
    for (auto [n_q, n_k] : sizes(block == 20)) {
      for (const std::string mode : {"local", "summary", "merged"}) {
        for (bool offset : {false, true}) {
          if (offset && mode == "local") continue;
          const Problem p = testing::make_problem(n_q, n_k, 8, 8, 1, 3, true, seed % 2);
          const Pos pos(p);
          check_pattern<sparse::FixedPattern>(
              {{"block", block}, {"summary", summary}, {"mode", mode}, {"per_head_offset", offset}},
              p,
              [&](Index i, Index j, Index h) {
                const Index x = pos.x(i), y = pos.y(j);
                if (y > x) return false;
                const Index k = offset ? h % (block / summary) : 0;
                const bool local = x / block == y / block;
                const bool cell =
                    y % block >= block - summary * (k + 1) && y % block < block - summary * k;
                return mode == "local" ? local : mode == "summary" ? cell : local || cell;
              },
              ++seed);
        }
      }
    }
  }
}

TEST(FixedPattern, PerHeadOffsetsDiffer) {
  const Problem p = testing::make_problem(128, 128, 8, 8, 1, 4, true);
  const auto pattern = sparse::FixedPattern::from_params(
      p,
      resolve_variant_params("fixed", {{"block", 32}, {"summary", 8}, {"per_head_offset", true}}));
  const auto layouts = pattern.layouts();
  ASSERT_EQ(layouts.size(), 4u);
  for (Index h = 1; h < 4; ++h) EXPECT_NE(layouts[h]->global_cols, layouts[0]->global_cols);
}

TEST(BigBirdPattern, MatchesDefinition) {
  std::uint64_t seed = 400;
  for (auto [block, n] : std::vector<std::pair<Index, Index>>{
           {16, 100}, {16, 161}, {20, 161}, {64, 300}, {128, 700}, {64, 256}, {50, 60}}) {
    const Index nb = (n + block - 1) / block;
    for (Index r : {0, 1, 2, 7}) {
      if (nb > 4 && r > nb - 4) continue;
      for (bool causal : {false, true}) {
        const Problem p = testing::make_problem(n, n, 8, 8, 1, 2, causal, seed % 2);
        const Json params = {{"block", block}, {"random_blocks", r}, {"seed", seed}};
        const auto pattern =
            sparse::BigBirdPattern::from_params(p, resolve_variant_params("bigbird", params));
        // The random draws are checked in BigBirdRandomBlocks; the definition takes them as given.
        check_pattern<sparse::BigBirdPattern>(
            params, p,
            [&](Index i, Index j, Index h) {
              if (causal && j > i) return false;
              const Index T = i / block, U = j / block;
              if (T == 0 || T == nb - 1 || U == 0 || U == nb - 1 || std::abs(T - U) <= 1) {
                return true;
              }
              const auto& row = pattern.random[h][T];
              return std::find(row.begin(), row.end(), U) != row.end();
            },
            ++seed);
      }
    }
  }
  // n_q != n_k: blocks are on the bottom-right aligned grid.
  for (auto [n_q, n_k] : std::vector<std::pair<Index, Index>>{{65, 200}, {200, 65}}) {
    const Problem p = testing::make_problem(n_q, n_k, 8, 8, 1, 2, false);
    const Json params = {{"block", 16}, {"random_blocks", 2}};
    const auto pattern =
        sparse::BigBirdPattern::from_params(p, resolve_variant_params("bigbird", params));
    const Pos pos(p);
    const Index nb = (pos.L + 15) / 16;
    check_pattern<sparse::BigBirdPattern>(
        params, p,
        [&](Index i, Index j, Index h) {
          const Index T = pos.x(i) / 16, U = pos.y(j) / 16;
          if (T == 0 || T == nb - 1 || U == 0 || U == nb - 1 || std::abs(T - U) <= 1) return true;
          const auto& row = pattern.random[h][T];
          return std::find(row.begin(), row.end(), U) != row.end();
        },
        ++seed);
  }
}

// Random blocks: min(r, candidates) per row, distinct, never in the window or the global
// blocks, different across heads and seeds, identical for the same seed.
TEST(BigBirdPattern, RandomBlocksAreDrawnWithoutReplacementOutsideTheWindow) {
  const Problem p = testing::make_problem(1600, 1600, 8, 8, 1, 4);
  auto draw = [&](Index r, std::uint64_t seed) {
    return sparse::BigBirdPattern::from_params(
        p,
        resolve_variant_params("bigbird", {{"block", 64}, {"random_blocks", r}, {"seed", seed}}));
  };
  const Index nb = 25;
  for (Index r : {1, 3, 20, 21}) {
    const auto bb = draw(r, 5);
    for (Index h = 0; h < p.heads; ++h) {
      for (Index T = 1; T + 1 < nb; ++T) {
        const auto& row = bb.random[h][T];
        const Index candidates = nb - 2 - ((T == 1 || T == nb - 2) ? 2 : 3);
        EXPECT_EQ(static_cast<Index>(row.size()), std::min(r, candidates)) << "row " << T;
        EXPECT_TRUE(std::adjacent_find(row.begin(), row.end()) == row.end());
        for (Index U : row) {
          EXPECT_TRUE(U >= 1 && U <= nb - 2) << U;
          EXPECT_GT(std::abs(U - T), 1) << "random block " << U << " in the window of " << T;
        }
      }
    }
  }
  const auto a = draw(3, 5), b = draw(3, 5), c = draw(3, 6);
  EXPECT_EQ(a.random, b.random);
  EXPECT_NE(a.random, c.random);
  EXPECT_NE(a.random[0], a.random[1]);
}

TEST(LongformerPattern, MatchesDefinition) {
  std::uint64_t seed = 500;
  for (auto [n_q, n_k] : sizes(true)) {
    const Index L = std::max(n_q, n_k);
    for (Index width : {0, 3, 20}) {
      for (const auto& global :
           std::vector<std::vector<Index>>{{}, {0}, {0, 5, 77, L - 1}, {L / 2, L / 2, 1}}) {
        for (bool causal : {false, true}) {
          std::vector<Index> g;
          for (Index x : global) {
            if (x < L) g.push_back(x);
          }
          const Problem p = testing::make_problem(n_q, n_k, 8, 8, 2, 2, causal, seed % 2);
          const Pos pos(p);
          check_pattern<sparse::LongformerPattern>(
              {{"width", width}, {"global", g}}, p,
              [&](Index i, Index j, Index) {
                const Index x = pos.x(i), y = pos.y(j);
                if (causal && y > x) return false;
                const bool gx = std::find(g.begin(), g.end(), x) != g.end();
                const bool gy = std::find(g.begin(), g.end(), y) != g.end();
                return gx || gy || std::abs(x - y) <= width;
              },
              ++seed);
        }
      }
    }
  }
}

// Causal non-leakage with each pattern's parameters chosen so that its blocks reach past the
// diagonal if the kernel let them.
TEST(SparsePatterns, CausalOutputsIgnoreLaterKeysAndValues) {
  const std::vector<std::pair<std::string, Json>> cases{
      {"window", {{"width", 40}}},
      {"window", {{"width", 9}, {"dilation", 4}}},
      {"local_blocks", {{"block", 48}, {"look_backward", 2}}},
      {"strided", {{"stride", 9}, {"mode", "merged"}}},
      {"strided", {{"stride", 9}, {"mode", "stride"}}},
      {"fixed", {{"block", 40}, {"summary", 8}, {"per_head_offset", true}}},
      {"bigbird", {{"block", 16}, {"random_blocks", 3}}},
      {"longformer", {{"width", 10}, {"global", {0, 3, 120, 199}}}},
  };
  const Index n = 200, t = 97;
  for (const auto& [variant, params] : cases) {
    const Problem p = testing::make_problem(n, n, 16, 16, 1, 3, true);
    const auto in = testing::make_inputs(p, 9);
    auto later = in;
    for (Index h = 0; h < p.heads; ++h) {
      for (Index j = t + 1; j < n; ++j) {
        later.v.head(0, h).row(j).array() += 3.0f;
        later.k.head(0, h).row(j).array() *= -2.0f;
      }
    }
    const Tensor4 a = testing::run_variant(variant, params, p, in);
    const Tensor4 b = testing::run_variant(variant, params, p, later);
    for (Index h = 0; h < p.heads; ++h) {
      EXPECT_EQ((a.head(0, h).topRows(t + 1) - b.head(0, h).topRows(t + 1)).cwiseAbs().maxCoeff(),
                0.0f)
          << variant << " " << params.dump() << " head " << h;
    }
  }
}

}  // namespace
}  // namespace attnbench
