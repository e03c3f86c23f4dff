// `fixed`: the Sparse Transformer's fixed pattern (causal): local floor(y / l) = floor(x / l),
// summary y mod l in the last c cells of each block (per head offsets optional), or both. The
// summary part runs as gathered global columns. Time O(n (l + n c / l) (d + d_v)); memory
// O(nnz blocks + n) layout + O(b 256) scratch per thread.
// Child et al., "Generating Long Sequences with Sparse Transformers", 2019.
#include "variants/sparse/patterns.h"

namespace attnbench::sparse {

FixedPattern FixedPattern::from_params(const Problem& p, const ParamSet& s) {
  FixedPattern f;
  f.grid = Grid(p);
  f.block = s.get_int("block");
  f.summary = s.get_int("summary");
  const std::string mode = s.get_string("mode");
  f.mode = mode == "local" ? Mode::kLocal : mode == "summary" ? Mode::kSummary : Mode::kMerged;
  f.per_head_offset = s.get_bool("per_head_offset");
  if (f.summary > f.block) {
    reject_param(kName, "summary", f.summary,
                 "at most block = " + std::to_string(f.block) + " summary cells per block", p);
  }
  return f;
}

Index FixedPattern::summary_index(Index head) const {
  return per_head_offset ? head % (block / summary) : 0;
}

Layouts FixedPattern::layouts() const {
  const Index L = grid.length();
  const Index seg = std::min(block, L);  // one segment when block >= L
  const Index b = block_for_segments(seg);
  const Index variants = per_head_offset ? std::min(grid.heads, block / summary) : 1;
  std::vector<std::shared_ptr<const BlockSparseLayout>> distinct;
  for (Index k = 0; k < variants; ++k) {
    BlockSparseBuilder builder(grid.n_q, grid.n_k, b, grid.causal);
    if (mode != Mode::kSummary) {
      auto interval = [&](Index x) {
        const Index start = (x / seg) * seg;
        Index e = start + seg;
        if (grid.causal) e = std::min(e, x + 1);
        return std::pair<Index, Index>{start, e};
      };
      builder.add_component(1, [&](Index t, std::vector<BlockSparseBuilder::Entry>& out) {
        append_interval_blocks(builder, t, L, interval, out);
      });
    }
    if (mode != Mode::kLocal) {
      // Summary cells are columns every later query sees: gathered global columns, which the
      // kernel also removes from the local blocks so a cell in the query's own block counts once.
      std::vector<Index> cols;
      const Index lo = block - summary * (k + 1), hi = block - summary * k;
      for (Index y = 0; y < L; ++y) {
        const Index cell = y % block;
        if (cell >= lo && cell < hi) cols.push_back(y);
      }
      builder.set_global_cols(std::move(cols));
    }
    distinct.push_back(std::make_shared<const BlockSparseLayout>(builder.build()));
  }
  if (distinct.size() == 1) return distinct;
  Layouts per_head;
  for (Index h = 0; h < grid.heads; ++h) per_head.push_back(distinct[summary_index(h)]);
  return per_head;
}

bool FixedPattern::allows(Index i, Index j, Index head) const {
  const Index x = grid.x(i), y = grid.y(j);
  if (y > x) return false;  // the pattern is causal by definition
  const bool local = y / block == x / block;
  const Index k = summary_index(head), cell = y % block;
  const bool summary_cell = cell >= block - summary * (k + 1) && cell < block - summary * k;
  switch (mode) {
    case Mode::kLocal:
      return local;
    case Mode::kSummary:
      return summary_cell;
    case Mode::kMerged:
      return local || summary_cell;
  }
  return false;
}

}  // namespace attnbench::sparse

namespace attnbench {

ATTNBENCH_REGISTER_VARIANT(fixed) {
  VariantInfo info;
  info.summary = "Sparse Transformer fixed pattern (block-local plus summary cells), causal";
  info.paper = "Child et al., Generating Long Sequences with Sparse Transformers, 2019";
  info.traits.family = "sparse";
  info.traits.non_causal = false;
  info.traits.time_complexity = "O(n (l + n c / l) (d + d_v))";
  info.traits.memory_complexity = "O(nnz blocks + n) layout + O(b * 256) scratch per thread";
  info.params = {
      ParamSpec::integer("block", 128, 1, double(Index(1) << 40),
                         "block length l: the local part is the query's own block of l tokens"),
      ParamSpec::integer("summary", 16, 1, double(Index(1) << 40),
                         "summary cells c per block (at most l): positions y with y mod l in "
                         "the last c cells are seen by every later query"),
      ParamSpec::choice("mode", "merged", {"local", "summary", "merged"},
                        "local (A1), summary (A2) or their union (merged)"),
      ParamSpec::boolean("per_head_offset", false,
                         "head h uses the (h mod floor(l / c))-th group of c cells from the end "
                         "of each block instead of the last c (openai/DeepSpeed 'different "
                         "global patterns')"),
  };
  info.make = make_factory<sparse::PatternAttention<sparse::FixedPattern>>();
  info.cost = sparse::pattern_cost<sparse::FixedPattern>;
  return info;
}

}  // namespace attnbench
