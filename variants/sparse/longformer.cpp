// `longformer`: sliding window |x - y| <= width (causal: 0 <= x - y <= width) plus global
// positions G (not block aligned): x in G sees every key, every query sees the keys in G.
// Time O(n (2w + 1 + |G|) (d + d_v) + |G| n (d + d_v)); memory O(n w / b^2 + n) layout +
// O(b 256) scratch per thread. Beltagy et al., "Longformer: The Long-Document Transformer", 2020.
#include "variants/sparse/patterns.h"

namespace attnbench::sparse {

LongformerPattern LongformerPattern::from_params(const Problem& p, const ParamSet& s) {
  LongformerPattern lf;
  lf.grid = Grid(p);
  lf.width = s.get_int("width");
  const Index L = lf.grid.length();
  for (Index x : s.get_int_list("global")) {
    if (x < 0 || x >= L) {
      reject_param(kName, "global", s.json().at("global"),
                   "positions in [0, " + std::to_string(L) + ") (position " + std::to_string(x) +
                       " is outside the sequence)",
                   p);
    }
    lf.global.push_back(x);
  }
  std::sort(lf.global.begin(), lf.global.end());
  lf.global.erase(std::unique(lf.global.begin(), lf.global.end()), lf.global.end());
  lf.is_global.assign(L, 0);
  for (Index x : lf.global) lf.is_global[x] = 1;
  return lf;
}

Layouts LongformerPattern::layouts() const {
  const Index w = std::min(width, grid.length());
  const Index block = block_for_band(grid.causal ? w + 1 : 2 * w + 1);
  BlockSparseBuilder builder(grid.n_q, grid.n_k, block, grid.causal);
  const Index nb = builder.grid_blocks(1);
  builder.add_component(1, [&](Index t, std::vector<BlockSparseBuilder::Entry>& out) {
    append_band_blocks(t, block, nb, grid.causal ? 0 : -w, w, out);
  });
  // Global tokens are rows with a dense pass and gathered columns; the kernel removes them from
  // the window blocks so a global key inside a query's window counts once.
  builder.set_global_rows(global);
  builder.set_global_cols(global);
  return {std::make_shared<const BlockSparseLayout>(builder.build())};
}

bool LongformerPattern::allows(Index i, Index j, Index) const {
  if (!grid.causal_ok(i, j)) return false;
  const Index x = grid.x(i), y = grid.y(j);
  return is_global[x] || is_global[y] || std::abs(x - y) <= width;
}

}  // namespace attnbench::sparse

namespace attnbench {

ATTNBENCH_REGISTER_VARIANT(longformer) {
  VariantInfo info;
  info.summary = "Longformer: sliding window plus global tokens at given positions";
  info.paper = "Beltagy et al., Longformer: The Long-Document Transformer, 2020";
  info.traits.family = "sparse";
  info.traits.time_complexity = "O(n (2w + 1 + 2|G|) (d + d_v))";
  info.traits.memory_complexity = "O(n w / b^2 + n) layout + O(b * 256) scratch per thread";
  info.params = {
      ParamSpec::integer("width", 256, 0, double(Index(1) << 40),
                         "one-sided window width w (Longformer's attention_window / 2)"),
      ParamSpec::int_list("global", Json::array({0}), 0, double(Index(1) << 40),
                          "global token positions (any, not block aligned; e.g. [CLS] = 0): "
                          "they see every key and every query sees them"),
  };
  info.make = make_factory<sparse::PatternAttention<sparse::LongformerPattern>>();
  info.cost = sparse::pattern_cost<sparse::LongformerPattern>;
  return info;
}

}  // namespace attnbench
