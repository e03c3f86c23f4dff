// `window`: Longformer's sliding window, |x - y| <= width (causal: 0 <= x - y <= width), with
// optional dilation. Time O(n (2 width + 1) (d + d_v)), memory O(n width / b^2) layout + O(b 256)
// scratch per thread. Beltagy et al., "Longformer: The Long-Document Transformer", 2020.
#include "variants/sparse/patterns.h"

namespace attnbench::sparse {

WindowPattern WindowPattern::from_params(const Problem& p, const ParamSet& s) {
  WindowPattern w;
  w.grid = Grid(p);
  w.width = s.get_int("width");
  w.dilation = s.get_int("dilation");
  return w;
}

Layouts WindowPattern::layouts() const {
  const Index L = grid.length();
  // Beyond the grid a wider window changes nothing; clipping keeps band bounds in 32 bits.
  const Index w = std::min(width, L);
  const Index block = block_for_band(grid.causal ? w + 1 : 2 * w + 1);
  BlockSparseBuilder builder(grid.n_q, grid.n_k, block, grid.causal);
  // A dilated window is a dense window on each residue class of the dilation.
  const Index nb = builder.grid_blocks(dilation);
  builder.add_component(dilation, [&](Index t, std::vector<BlockSparseBuilder::Entry>& out) {
    append_band_blocks(t, block, nb, grid.causal ? 0 : -w, w, out);
  });
  return {std::make_shared<const BlockSparseLayout>(builder.build())};
}

bool WindowPattern::allows(Index i, Index j, Index) const {
  const Index diff = grid.x(i) - grid.y(j);
  if (grid.causal && diff < 0) return false;
  // Divide rather than multiply: width * dilation may overflow.
  return diff % dilation == 0 && std::abs(diff) / dilation <= width;
}

}  // namespace attnbench::sparse

namespace attnbench {

ATTNBENCH_REGISTER_VARIANT(window) {
  VariantInfo info;
  info.summary = "sliding-window attention (Longformer local part), optional dilation";
  info.paper = "Beltagy et al., Longformer: The Long-Document Transformer, 2020";
  info.traits.family = "sparse";
  info.traits.time_complexity = "O(n (2w + 1) (d + d_v))";
  info.traits.memory_complexity = "O(n w / b^2) layout + O(b * 256) scratch per thread";
  info.params = {
      ParamSpec::integer("width", 256, 0, double(Index(1) << 40),
                         "one-sided width w: query x sees keys y with |x - y| <= w * dilation "
                         "(causal: 0 <= x - y); Longformer's attention_window / 2"),
      ParamSpec::integer("dilation", 1, 1, double(Index(1) << 30),
                         "dilation: only keys with (x - y) mod dilation = 0, so the window "
                         "reaches w * dilation tokens with 2w + 1 keys"),
  };
  info.make = make_factory<sparse::PatternAttention<sparse::WindowPattern>>();
  info.cost = sparse::pattern_cost<sparse::WindowPattern>;
  return info;
}

}  // namespace attnbench
