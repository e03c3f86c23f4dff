// `bigbird`: BigBird ITC block-sparse attention: a 3-block window, the first and last blocks
// global (as rows and as columns), and r random blocks per block row drawn per head.
// Time O(n b (r + 5) (d + d_v)); memory O(heads n / b (r + 5) (b / 64)^2) layout + O(64 256)
// scratch per thread. Zaheer et al., "Big Bird: Transformers for Longer Sequences", NeurIPS 2020.
#include "attention/random.h"
#include "variants/sparse/patterns.h"

namespace attnbench::sparse {

BigBirdPattern BigBirdPattern::from_params(const Problem& p, const ParamSet& s) {
  BigBirdPattern bb;
  bb.grid = Grid(p);
  bb.block = s.get_int("block");
  bb.random_blocks = s.get_int("random_blocks");
  bb.seed = static_cast<std::uint64_t>(s.get_int("seed"));
  const Index nb = bb.blocks();
  // Block rows 1 and nb - 2 have nb - 4 candidates outside the window and the global blocks
  // (middle rows nb - 5); r = nb - 4 already makes every row dense. With nb <= 4 the window and
  // the global blocks cover everything, whatever r is.
  if (nb > 4 && bb.random_blocks > nb - 4) {
    reject_param(kName, "random_blocks", bb.random_blocks,
                 "at most nb - 4 = " + std::to_string(nb - 4) + " random blocks per row (nb = " +
                     std::to_string(nb) + " blocks of " + std::to_string(bb.block) +
                     " tokens; rows 1 and nb - 2 have only nb - 4 blocks outside the window "
                     "and the global blocks)",
                 p);
  }
  // Drawn per head, without replacement, from 1 .. nb - 2 minus the window {T - 1, T, T + 1},
  // so no random block duplicates a window or global block (the reference code's
  // bigbird_block_rand_mask misses this for rows nb - 3 and nb - 2), and from the whole
  // sequence (no last_idx = 1024 restriction).
  bb.random.assign(p.heads, std::vector<std::vector<Index>>(std::max<Index>(nb, 0)));
  std::vector<Index> candidates;
  for (Index h = 0; h < p.heads; ++h) {
    Rng rng(bb.seed, static_cast<std::uint64_t>(h), 0xb16b1dull);
    for (Index T = 1; T + 1 < nb; ++T) {
      candidates.clear();
      for (Index U = 1; U + 1 < nb; ++U) {
        if (U < T - 1 || U > T + 1) candidates.push_back(U);
      }
      const Index take = std::min<Index>(bb.random_blocks, candidates.size());
      for (Index a = 0; a < take; ++a) {  // partial Fisher-Yates
        const Index pick = a + static_cast<Index>(rng.uniform_int(candidates.size() - a));
        std::swap(candidates[a], candidates[pick]);
      }
      auto& row = bb.random[h][T];
      row.assign(candidates.begin(), candidates.begin() + take);
      std::sort(row.begin(), row.end());
    }
  }
  return bb;
}

Layouts BigBirdPattern::layouts() const {
  const Index nb = blocks();
  // Blocks that are multiples of 64 run as (block / 64)^2 FULL kernel tiles of 64; any other
  // block size runs as one tile per block.
  const Index kb = block % kBlockSparseTile == 0 ? kBlockSparseTile : block;
  const Index sub = block / kb;
  bool any_random = false;
  for (const auto& head : random) {
    for (const auto& row : head) any_random = any_random || !row.empty();
  }
  const Index n_layouts = any_random ? grid.heads : 1;
  Layouts out;
  std::vector<Index> cols;
  for (Index h = 0; h < n_layouts; ++h) {
    BlockSparseBuilder builder(grid.n_q, grid.n_k, kb, grid.causal);
    builder.add_component(1, [&](Index t, std::vector<BlockSparseBuilder::Entry>& entries) {
      const Index T = t / sub;
      cols.clear();
      if (T == 0 || T == nb - 1) {
        for (Index U = 0; U < nb; ++U) cols.push_back(U);
      } else {
        cols = {0, nb - 1, T - 1, T, T + 1};
        cols.insert(cols.end(), random[h][T].begin(), random[h][T].end());
      }
      // Repeated blocks (row 1's window contains the global block 0) are merged by the
      // builder: a key is counted once however many parts of the pattern select it.
      for (Index U : cols) {
        for (Index s = 0; s < sub; ++s) entries.push_back({U * sub + s, BlockKind::kFull, 0, 0});
      }
    });
    out.push_back(std::make_shared<const BlockSparseLayout>(builder.build()));
  }
  return out;
}

bool BigBirdPattern::allows(Index i, Index j, Index head) const {
  if (!grid.causal_ok(i, j)) return false;
  const Index nb = blocks(), T = grid.x(i) / block, U = grid.y(j) / block;
  if (T == 0 || T == nb - 1 || U == 0 || U == nb - 1 || std::abs(T - U) <= 1) return true;
  const auto& row = random[head][T];
  return std::binary_search(row.begin(), row.end(), U);
}

}  // namespace attnbench::sparse

namespace attnbench {

ATTNBENCH_REGISTER_VARIANT(bigbird) {
  VariantInfo info;
  info.summary = "BigBird ITC: 3-block window + first/last blocks global + r random blocks/row";
  info.paper = "Zaheer et al., Big Bird: Transformers for Longer Sequences, NeurIPS 2020";
  info.traits.family = "sparse";
  info.traits.randomized = true;
  info.traits.time_complexity = "O(n b (r + 5) (d + d_v))";
  info.traits.memory_complexity = "O(heads * nnz blocks) layout + O(64 * 256) scratch per thread";
  info.params = {
      ParamSpec::integer("block", 64, 1, double(Index(1) << 40),
                         "block size b; n need not be a multiple (the last block is shorter)"),
      ParamSpec::integer("random_blocks", 3, 0, double(Index(1) << 30),
                         "random blocks r per block row (at most nb - 4; with nb <= 4 blocks "
                         "the pattern is dense and r is unused)"),
      ParamSpec::integer("seed", 0, 0, 9.0e15,
                         "seed of the random blocks; each head draws from (seed, head)"),
  };
  info.make = make_factory<sparse::PatternAttention<sparse::BigBirdPattern>>();
  info.cost = sparse::pattern_cost<sparse::BigBirdPattern>;
  return info;
}

}  // namespace attnbench
