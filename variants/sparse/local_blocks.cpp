// `local_blocks`: blocked local attention (lucidrains/local-attention): the segment of length
// `block` holding query x sees the look_backward segments before it and look_forward after it.
// Time O(n block (lb + lf + 1) (d + d_v)), memory O(n / 64 (lb + lf + 1) block / 64) layout +
// O(64 * 256) scratch per thread. Beltagy et al. 2020 (blocked windows);
// lucidrains/local-attention.
#include "variants/sparse/patterns.h"

namespace attnbench::sparse {

LocalBlocksPattern LocalBlocksPattern::from_params(const Problem& p, const ParamSet& s) {
  LocalBlocksPattern lb;
  lb.grid = Grid(p);
  lb.block = s.get_int("block");
  lb.look_backward = s.get_int("look_backward");
  lb.look_forward_auto = s.is_auto("look_forward");
  lb.look_forward = lb.look_forward_auto ? (p.causal ? 0 : 1) : s.get_int("look_forward");
  lb.exact_window = s.get_bool("exact_window");
  if (p.causal && lb.look_forward > 0) {
    // lucidrains asserts the same: a causal query would only look at masked keys.
    reject_param(kName, "look_forward", lb.look_forward,
                 "0 for a causal problem (keys after the query are masked)", p);
  }
  return lb;
}

Json LocalBlocksPattern::resolved() const {
  Json j = Json::object();
  if (look_forward_auto) j["look_forward"] = look_forward;
  return j;
}

Layouts LocalBlocksPattern::layouts() const {
  const Index L = grid.length();
  // Clipping segment and reach to the grid changes nothing and keeps the products below in
  // range for huge parameters.
  const Index block = std::min(this->block, L);
  const Index back = std::min(look_backward, L), fwd = std::min(look_forward, L);
  const Index b = block_for_segments(block);
  BlockSparseBuilder builder(grid.n_q, grid.n_k, b, grid.causal);
  auto interval = [&](Index x) {
    const Index seg = x / block;
    Index a = (seg - back) * block, e = (seg + fwd + 1) * block;
    if (exact_window) {
      a = std::max(a, x - block * back);
      e = std::min(e, x + block * fwd + 1);
    }
    if (grid.causal) e = std::min(e, x + 1);
    return std::pair<Index, Index>{a, e};
  };
  builder.add_component(1, [&](Index t, std::vector<BlockSparseBuilder::Entry>& out) {
    append_interval_blocks(builder, t, L, interval, out);
  });
  return {std::make_shared<const BlockSparseLayout>(builder.build())};
}

bool LocalBlocksPattern::allows(Index i, Index j, Index) const {
  if (!grid.causal_ok(i, j)) return false;
  const Index L = grid.length(), x = grid.x(i), y = grid.y(j);
  // As in layouts(): clipping to the grid is exact and avoids overflow.
  const Index block = std::min(this->block, L);
  const Index back = std::min(look_backward, L), fwd = std::min(look_forward, L);
  const Index seg_q = x / block, seg_k = y / block;
  if (seg_k < seg_q - back || seg_k > seg_q + fwd) return false;
  return !exact_window || (x - y <= block * back && y - x <= block * fwd);
}

}  // namespace attnbench::sparse

namespace attnbench {

ATTNBENCH_REGISTER_VARIANT(local_blocks) {
  VariantInfo info;
  info.summary = "blocked local attention: each segment sees its neighbour segments";
  info.paper = "lucidrains/local-attention; blocked windows as in Beltagy et al. 2020";
  info.traits.family = "sparse";
  info.traits.time_complexity = "O(n block (look_backward + look_forward + 1) (d + d_v))";
  info.traits.memory_complexity = "O(nnz blocks) layout + O(64 * 256) scratch per thread";
  info.params = {
      ParamSpec::integer("block", 256, 1, double(Index(1) << 40),
                         "segment length (lucidrains window_size); the last segment may be "
                         "shorter (padding keys are excluded, padding rows dropped)"),
      ParamSpec::integer("look_backward", 1, 0, double(Index(1) << 30),
                         "segments before the query's segment that it sees"),
      ParamSpec::integer("look_forward", nullptr, 0, double(Index(1) << 30),
                         "segments after the query's segment that it sees (must be 0 when "
                         "causal)",
                         "1 when non-causal, 0 when causal"),
      ParamSpec::boolean("exact_window", false,
                         "also require x - y <= block * look_backward and y - x <= block * "
                         "look_forward, a true sliding window (lucidrains exact_windowsize)"),
  };
  info.make = make_factory<sparse::PatternAttention<sparse::LocalBlocksPattern>>();
  info.cost = sparse::pattern_cost<sparse::LocalBlocksPattern>;
  return info;
}

}  // namespace attnbench
