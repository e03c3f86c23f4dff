// `strided`: the Sparse Transformer's strided pattern (causal): local 0 <= x - y < l, stride
// (x - y) mod l = 0, or their union. The stride part runs as a dilated component (each residue
// class mod l is a dense causal block), so it costs what it computes.
// Time O(n (l + n / l) (d + d_v)); memory O(n l / b^2 + n^2 / (l^2 b^2) l) layout + O(b 256)
// scratch per thread. Child et al., "Generating Long Sequences with Sparse Transformers", 2019.
#include <cmath>

#include "variants/sparse/patterns.h"

namespace attnbench::sparse {

StridedPattern StridedPattern::from_params(const Problem& p, const ParamSet& s) {
  StridedPattern sp;
  sp.grid = Grid(p);
  sp.stride_auto = s.is_auto("stride");
  sp.stride = sp.stride_auto ? std::max<Index>(1, std::llround(std::sqrt(double(sp.grid.length()))))
                             : s.get_int("stride");
  const std::string mode = s.get_string("mode");
  sp.mode = mode == "local" ? Mode::kLocal : mode == "stride" ? Mode::kStride : Mode::kMerged;
  return sp;
}

Json StridedPattern::resolved() const {
  Json j = Json::object();
  if (stride_auto) j["stride"] = stride;
  return j;
}

Layouts StridedPattern::layouts() const {
  const Index L = grid.length();
  // l >= L behaves like l = L (local covers everything, stride leaves only x = y).
  const Index l = std::min(stride, L);
  const Index block = block_for_band(l);
  BlockSparseBuilder builder(grid.n_q, grid.n_k, block, grid.causal);
  using Entry = BlockSparseBuilder::Entry;
  if (mode != Mode::kStride) {
    const Index nb = builder.grid_blocks(1);
    builder.add_component(1, [&](Index t, std::vector<Entry>& out) {
      append_band_blocks(t, block, nb, 0, l - 1, out);
    });
  }
  // In dilated coordinates the stride part is X - Y >= 0 (>= 1 when merged: x = y is local).
  const Index stride_lo = mode == Mode::kMerged ? 1 : 0;
  if (mode == Mode::kStride || (mode == Mode::kMerged && l < L)) {
    const Index nb = builder.grid_blocks(l);
    builder.add_component(l, [&](Index t, std::vector<Entry>& out) {
      append_band_blocks(t, block, nb, stride_lo, kBandInf, out);
    });
  }
  return {std::make_shared<const BlockSparseLayout>(builder.build())};
}

bool StridedPattern::allows(Index i, Index j, Index) const {
  const Index diff = grid.x(i) - grid.y(j);
  if (diff < 0) return false;  // the pattern is causal by definition
  const bool local = diff < stride, strided = diff % stride == 0;
  switch (mode) {
    case Mode::kLocal:
      return local;
    case Mode::kStride:
      return strided;
    case Mode::kMerged:
      return local || strided;
  }
  return false;
}

}  // namespace attnbench::sparse

namespace attnbench {

ATTNBENCH_REGISTER_VARIANT(strided) {
  VariantInfo info;
  info.summary = "Sparse Transformer strided pattern (local, stride or merged), causal";
  info.paper = "Child et al., Generating Long Sequences with Sparse Transformers, 2019";
  info.traits.family = "sparse";
  info.traits.non_causal = false;
  info.traits.time_complexity = "O(n (l + n / l) (d + d_v)); O(n^1.5 (d + d_v)) at l = sqrt(n)";
  info.traits.memory_complexity = "O(nnz blocks) layout + O(b * 256) scratch per thread";
  info.params = {
      ParamSpec::integer("stride", nullptr, 1, double(Index(1) << 40),
                         "stride l: local part 0 <= x - y < l, stride part (x - y) mod l = 0",
                         "round(sqrt(max(n_q, n_k))), the paper's l ~ sqrt(n)"),
      ParamSpec::choice("mode", "merged", {"local", "stride", "merged"},
                        "local (A1), stride (A2) or their union (merged, one head with both)"),
  };
  info.make = make_factory<sparse::PatternAttention<sparse::StridedPattern>>();
  info.cost = sparse::pattern_cost<sparse::StridedPattern>;
  return info;
}

}  // namespace attnbench
