// The block layout of H-Transformer-1D: padded length, levels, and for every (level, block, row
// half) the key ranges it attends to. The kernel iterates these tiles; tests call the same
// functions to check that every pair (i, j) is covered by exactly one tile (partition property).
// Zhu & Soricut, "H-Transformer-1D", ACL 2021 (arXiv 2107.11906); flaxformer h_transformer.
#pragma once

#include <vector>

#include "attention/tensor.h"

namespace attnbench::hierarchical {

// n tokens in blocks of Nr, padded to L = Nr * 2^M with M >= 1 the smallest such that L >= n.
// Level l in [0, M) holds L_l = L / 2^l coarse tokens in 2^(M - l) blocks of Nr; the top level
// has exactly two blocks. Coarse token t of level l stands for fine positions [t 2^l, (t+1) 2^l).
struct H1dGeometry {
  Index n = 0;       // tokens
  Index nr = 0;      // block size Nr (even)
  Index levels = 0;  // M
  Index padded = 0;  // L

  Index level_tokens(Index l) const { return padded >> l; }
  Index level_blocks(Index l) const { return level_tokens(l) / nr; }
  // Coarse tokens of level l that contain at least one real position (< n).
  Index real_tokens(Index l) const { return (n + (Index(1) << l) - 1) >> l; }
};

// Requires n >= 1 and an even nr >= 2 (the variant validates and reports bad values).
H1dGeometry h1d_geometry(Index n, Index nr);

// One tile: rows [row_begin, row_end) of level `level` against up to two key ranges of the same
// level. Level 0 has one tile per block: the diagonal block and its neighbours (non-causal:
// left, diagonal, right; causal: left and diagonal, with the element mask j <= i on the
// diagonal). A coarse level l >= 1 has two tiles per block, one per half of its rows, against
// the neighbour blocks minus the correction mask (what level l - 1 already covers): with
// h = Nr / 2, the top half sees the left block's first h keys and the whole right block, the
// bottom half the whole left block and the right block's last h keys. Causal drops right blocks.
// Ranges are clipped to the tokens that hold a real position, and empty ranges are dropped.
struct H1dTile {
  Index level = 0;
  Index row_begin = 0, row_end = 0;
  int ranges = 0;
  Index key_begin[2] = {0, 0};
  Index key_end[2] = {0, 0};
  bool causal_diagonal = false;  // level-0 causal tile: key j is excluded for row i when j > i

  Index rows() const { return row_end - row_begin; }
  Index keys() const {
    Index total = 0;
    for (int r = 0; r < ranges; ++r) total += key_end[r] - key_begin[r];
    return total;
  }
};

// Tiles per block: 1 at level 0, 2 (the row halves) above.
inline int h1d_tiles_per_block(Index level) { return level == 0 ? 1 : 2; }

H1dTile h1d_tile(const H1dGeometry& g, Index level, Index block, int half, bool causal);

// Every tile that covers the fine pair (query i, key j), i, j in [0, n): the pair is covered by
// tile (l, ...) when the level-l token of j lies in one of its key ranges, the level-l token of
// i in its rows, and (causal diagonal) j <= i. Returns the covering levels, one entry per tile;
// the partition property says exactly one entry (none for causal j > i).
std::vector<Index> h1d_covering_levels(const H1dGeometry& g, Index i, Index j, bool causal);

// Scores the kernel computes for one head (sum over tiles of rows x keys), masked entries
// included: the cost model and the diagnostics use this count.
double h1d_score_count(const H1dGeometry& g, bool causal);

}  // namespace attnbench::hierarchical
