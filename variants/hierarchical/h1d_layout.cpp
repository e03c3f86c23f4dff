#include "variants/hierarchical/h1d_layout.h"

#include <algorithm>
#include <cassert>

namespace attnbench::hierarchical {

H1dGeometry h1d_geometry(Index n, Index nr) {
  assert(n >= 1 && nr >= 2 && nr % 2 == 0);
  H1dGeometry g;
  g.n = n;
  g.nr = nr;
  g.levels = 1;
  while ((nr << g.levels) < n) ++g.levels;
  g.padded = nr << g.levels;
  return g;
}

H1dTile h1d_tile(const H1dGeometry& g, Index level, Index block, int half, bool causal) {
  H1dTile t;
  t.level = level;
  const Index nr = g.nr, h = nr / 2;
  const Index real = g.real_tokens(level);
  const Index blocks = g.level_blocks(level);
  auto add_range = [&](Index begin, Index end) {
    begin = std::max<Index>(begin, 0);
    end = std::min(end, real);
    if (begin < end) {
      t.key_begin[t.ranges] = begin;
      t.key_end[t.ranges] = end;
      ++t.ranges;
    }
  };
  const Index b0 = block * nr;  // first row (and diagonal key) of the block
  if (level == 0) {
    t.row_begin = b0;
    t.row_end = std::min(b0 + nr, real);
    // Left, diagonal and right blocks are consecutive: one range.
    const Index end = causal ? b0 + nr : std::min(b0 + 2 * nr, blocks * nr);
    add_range(b0 - nr, end);
    t.causal_diagonal = causal;
  } else {
    t.row_begin = b0 + half * h;
    t.row_end = std::min(b0 + (half + 1) * h, real);
    const bool has_left = block > 0, has_right = block + 1 < blocks && !causal;
    if (half == 0) {
      if (has_left) add_range(b0 - nr, b0 - nr + h);
      if (has_right) add_range(b0 + nr, b0 + 2 * nr);
    } else {
      if (has_left) add_range(b0 - nr, b0);
      if (has_right) add_range(b0 + nr + h, b0 + 2 * nr);
    }
  }
  if (t.row_begin >= t.row_end) t.row_end = t.row_begin;
  return t;
}

std::vector<Index> h1d_covering_levels(const H1dGeometry& g, Index i, Index j, bool causal) {
  std::vector<Index> levels;
  for (Index l = 0; l < g.levels; ++l) {
    const Index r = i >> l, c = j >> l;
    const Index block = r / g.nr;
    for (int half = 0; half < h1d_tiles_per_block(l); ++half) {
      const H1dTile t = h1d_tile(g, l, block, half, causal);
      if (r < t.row_begin || r >= t.row_end) continue;
      if (t.causal_diagonal && j > i) continue;
      for (int k = 0; k < t.ranges; ++k) {
        if (c >= t.key_begin[k] && c < t.key_end[k]) levels.push_back(l);
      }
    }
  }
  return levels;
}

double h1d_score_count(const H1dGeometry& g, bool causal) {
  double total = 0;
  for (Index l = 0; l < g.levels; ++l) {
    for (Index b = 0; b < g.level_blocks(l); ++b) {
      for (int half = 0; half < h1d_tiles_per_block(l); ++half) {
        const H1dTile t = h1d_tile(g, l, b, half, causal);
        total += double(t.rows()) * double(t.keys());
      }
    }
  }
  return total;
}

}  // namespace attnbench::hierarchical
