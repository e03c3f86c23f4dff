#include "attention/block_sparse.h"

#include <tbb/blocked_range.h>
#include <cmath>
#include <map>
#include <stdexcept>

#include "attention/online_softmax.h"
#include "attention/parallel.h"

namespace attnbench {
namespace {

// ceil(a / b) for b > 0 and any sign of a.
Index ceil_div(Index a, Index b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
// floor(a / b) for b > 0 and any sign of a.
Index floor_div(Index a, Index b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Dilated coordinate ranges of residue class r: queries [x_lo, x_hi), keys [y_lo, y_hi).
struct ResidueRange {
  Index x_lo, x_hi, y_lo, y_hi;
};
ResidueRange residue_range(const BlockSparseLayout& lay, Index dilation, Index r) {
  const Index L = lay.length();
  const Index hi = ceil_div(L - r, dilation);
  return {std::max<Index>(0, ceil_div(L - lay.n_q - r, dilation)), hi,
          std::max<Index>(0, ceil_div(L - lay.n_k - r, dilation)), hi};
}

// A run: CSR entries [k0, k1) of consecutive block columns, covering dilated key coordinates
// [y0, y1) after clipping to the grid and, for causal layouts, to the tile's last row.
struct Run {
  Index k0, k1, y0, y1;
};

template <typename F>
void for_each_run(const BlockSparseLayout& lay, const BlockSparseComponent& c,
                  const BlockSparseAttention::RowTile& tile, Index run_blocks, F&& f) {
  const Index b = lay.block;
  const ResidueRange rr = residue_range(lay, c.dilation, tile.residue);
  const Index x_last = tile.x0 + tile.rows - 1;
  const Index end = c.row_ptr[tile.block_row + 1];
  for (Index k = c.row_ptr[tile.block_row]; k < end;) {
    Index k1 = k + 1;
    while (k1 < end && k1 - k < run_blocks && c.col_idx[k1] == c.col_idx[k1 - 1] + 1) ++k1;
    const Index y0 = std::max<Index>(Index(c.col_idx[k]) * b, rr.y_lo);
    Index y1 = std::min<Index>((Index(c.col_idx[k1 - 1]) + 1) * b, rr.y_hi);
    // Columns are sorted: once a run starts after the tile's last row, so do all later ones.
    if (lay.causal && y0 > x_last) break;
    if (lay.causal) y1 = std::min(y1, x_last + 1);
    if (y1 > y0) f(Run{k, k1, y0, y1});
    k = k1;
  }
}

// Allowed key interval [a, e) of row X inside block columns [yb0, yb1) for interval kinds.
inline void row_interval(BlockKind kind, Index lo, Index hi, bool causal, Index X, Index yb0,
                         Index yb1, Index& a, Index& e) {
  a = yb0;
  e = yb1;
  if (kind == BlockKind::kDiagCausal) {
    e = std::min(e, X + 1);
  } else if (kind == BlockKind::kBand) {
    if (hi != kBandInf) a = std::max(a, X - hi);
    if (lo != -kBandInf) e = std::min(e, X - lo + 1);
  }
  if (causal) e = std::min(e, X + 1);
  a = std::min(a, yb1);
  e = std::max(e, a);
}

inline bool kind_allows(const BlockSparseLayout& lay, const BlockSparseComponent& c, Index k,
                        Index t, Index X, Index Y) {
  const Index col = c.col_idx[k];
  if (lay.causal && Y > X) return false;
  switch (c.kind[k]) {
    case BlockKind::kFull:
      return true;
    case BlockKind::kDiagCausal:
      return Y <= X;
    case BlockKind::kBand: {
      const Index diff = X - Y;
      return (c.lo[k] == -kBandInf || diff >= c.lo[k]) && (c.hi[k] == kBandInf || diff <= c.hi[k]);
    }
    case BlockKind::kBitmask:
      return lay.bitmask_bit(c.lo[k], X - t * lay.block, Y - col * lay.block);
  }
  return false;
}

Index run_cols_for(Index block) { return block * std::max<Index>(1, kBlockSparseRunCols / block); }

}  // namespace

const char* to_string(BlockKind kind) {
  switch (kind) {
    case BlockKind::kFull:
      return "full";
    case BlockKind::kDiagCausal:
      return "diag_causal";
    case BlockKind::kBand:
      return "band";
    case BlockKind::kBitmask:
      return "bitmask";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Layout

Index BlockSparseLayout::nnz_blocks() const {
  Index n = 0;
  for (const auto& c : components) n += c.nnz();
  return n;
}

double BlockSparseLayout::memory_bytes() const {
  double bytes = 0;
  for (const auto& c : components) {
    bytes +=
        double(c.row_ptr.capacity()) * sizeof(Index) +
        double(c.col_idx.capacity() + c.lo.capacity() + c.hi.capacity()) * sizeof(std::int32_t) +
        double(c.kind.capacity()) * sizeof(BlockKind);
  }
  bytes += double(bitmask_words.capacity()) * sizeof(std::uint64_t);
  bytes += double(global_rows.capacity() + global_cols.capacity()) * sizeof(Index);
  bytes += double(global_row_flag.capacity() + global_col_flag.capacity());
  return bytes;
}

void BlockSparseLayout::validate() const {
  auto fail = [](const std::string& what) {
    throw std::logic_error("block-sparse layout: " + what);
  };
  if (n_q < 1 || n_k < 1) fail("empty problem");
  if (block < 1) fail("block size " + std::to_string(block));
  if (components.empty()) fail("no component");
  const Index L = length();
  for (std::size_t ci = 0; ci < components.size(); ++ci) {
    const auto& c = components[ci];
    const std::string where = "component " + std::to_string(ci);
    if (c.dilation < 1) fail(where + ": dilation " + std::to_string(c.dilation));
    const Index nb = ceil_div(ceil_div(L, c.dilation), block);
    if (c.row_blocks() != nb)
      fail(where + ": " + std::to_string(c.row_blocks()) + " block rows, expected " +
           std::to_string(nb));
    if (c.row_ptr.front() != 0 || c.row_ptr.back() != c.nnz()) fail(where + ": bad row_ptr ends");
    if (c.kind.size() != c.col_idx.size() || c.lo.size() != c.col_idx.size() ||
        c.hi.size() != c.col_idx.size()) {
      fail(where + ": array sizes differ");
    }
    for (Index t = 0; t < nb; ++t) {
      if (c.row_ptr[t + 1] < c.row_ptr[t]) fail(where + ": row_ptr decreases");
      for (Index k = c.row_ptr[t]; k < c.row_ptr[t + 1]; ++k) {
        if (c.col_idx[k] < 0 || c.col_idx[k] >= nb) fail(where + ": column out of range");
        if (k > c.row_ptr[t] && c.col_idx[k] <= c.col_idx[k - 1]) {
          fail(where + ": columns of block row " + std::to_string(t) + " not sorted and unique");
        }
        if (c.kind[k] == BlockKind::kBitmask && (c.lo[k] < 0 || c.lo[k] >= bitmasks())) {
          fail(where + ": bitmask id out of range");
        }
      }
    }
  }
  auto check_positions = [&](const std::vector<Index>& pos, const std::vector<std::uint8_t>& flag,
                             const char* what) {
    for (std::size_t a = 0; a < pos.size(); ++a) {
      if (pos[a] < 0 || pos[a] >= L) fail(std::string(what) + " position out of range");
      if (a && pos[a] <= pos[a - 1]) fail(std::string(what) + " positions not sorted and unique");
    }
    if (!pos.empty() && static_cast<Index>(flag.size()) != L) fail(std::string(what) + " flags");
  };
  check_positions(global_rows, global_row_flag, "global row");
  check_positions(global_cols, global_col_flag, "global column");
}

std::vector<std::uint8_t> BlockSparseLayout::to_count_mask() const {
  std::vector<std::uint8_t> count(static_cast<std::size_t>(n_q * n_k), 0);
  const Index L = length(), qs = L - n_q, ks = L - n_k;
  auto is_gcol = [&](Index y) { return !global_col_flag.empty() && global_col_flag[y]; };
  for (const auto& c : components) {
    const Index dil = c.dilation;
    for (Index r = 0; r < std::min(dil, L); ++r) {
      for (Index t = 0; t < c.row_blocks(); ++t) {
        for (Index k = c.row_ptr[t]; k < c.row_ptr[t + 1]; ++k) {
          for (Index X = t * block; X < (t + 1) * block; ++X) {
            const Index i = r + dil * X - qs;
            if (i < 0 || i >= n_q) continue;
            for (Index Y = Index(c.col_idx[k]) * block; Y < (c.col_idx[k] + 1) * block; ++Y) {
              const Index y = r + dil * Y, j = y - ks;
              if (j < 0 || j >= n_k || is_gcol(y)) continue;
              if (kind_allows(*this, c, k, t, X, Y)) ++count[i * n_k + j];
            }
          }
        }
      }
    }
  }
  for (Index i = 0; i < n_q; ++i) {
    const Index x = i + qs;
    for (Index y : global_cols) {
      const Index j = y - ks;
      if (j >= 0 && (!causal || y <= x)) ++count[i * n_k + j];
    }
  }
  for (Index x : global_rows) {
    const Index i = x - qs;
    if (i < 0) continue;
    for (Index j = 0; j < n_k; ++j) count[i * n_k + j] = (!causal || j + ks <= x) ? 1 : 0;
  }
  return count;
}

std::vector<std::uint8_t> BlockSparseLayout::to_dense_mask() const {
  auto m = to_count_mask();
  for (auto& x : m) x = x ? 1 : 0;
  return m;
}

// ---------------------------------------------------------------------------------------------
// Builder

BlockSparseBuilder::BlockSparseBuilder(Index n_q, Index n_k, Index block, bool causal) {
  if (n_q < 1 || n_k < 1 || block < 1) {
    throw std::logic_error("BlockSparseBuilder: n_q, n_k and block must be >= 1");
  }
  layout_.n_q = n_q;
  layout_.n_k = n_k;
  layout_.block = block;
  layout_.causal = causal;
  layout_.words_per_bitmask = (block * block + 63) / 64;
}

Index BlockSparseBuilder::grid_blocks(Index dilation) const {
  return ceil_div(ceil_div(layout_.length(), dilation), layout_.block);
}

void BlockSparseBuilder::add_component(Index dilation, const RowBlocks& row_blocks) {
  if (dilation < 1) throw std::logic_error("BlockSparseBuilder: dilation < 1");
  const Index nb = grid_blocks(dilation);
  BlockSparseComponent c;
  c.dilation = dilation;
  c.row_ptr.assign(nb + 1, 0);
  std::vector<Entry> row;
  // Sorts, clips and merges one block row's entries in place.
  auto normalise = [&](Index t) {
    row.clear();
    row_blocks(t, row);
    std::erase_if(row, [&](const Entry& e) { return e.col < 0 || e.col >= nb; });
    std::sort(row.begin(), row.end(), [](const Entry& a, const Entry& b) { return a.col < b.col; });
    std::size_t out = 0;
    for (std::size_t a = 0; a < row.size(); ++a) {
      if (out && row[out - 1].col == row[a].col) {
        Entry& kept = row[out - 1];
        const Entry& e = row[a];
        const bool same = kept.kind == e.kind && kept.lo == e.lo && kept.hi == e.hi;
        if (e.kind == BlockKind::kFull) {
          kept = e;
        } else if (!same && kept.kind != BlockKind::kFull) {
          throw std::logic_error("BlockSparseBuilder: block (" + std::to_string(t) + ", " +
                                 std::to_string(e.col) + ") emitted with conflicting kinds");
        }
      } else {
        row[out++] = row[a];
      }
    }
    row.resize(out);
  };
  for (Index t = 0; t < nb; ++t) {
    normalise(t);
    c.row_ptr[t + 1] = c.row_ptr[t] + static_cast<Index>(row.size());
  }
  const auto nnz = static_cast<std::size_t>(c.row_ptr[nb]);
  c.col_idx.resize(nnz);
  c.kind.resize(nnz);
  c.lo.resize(nnz);
  c.hi.resize(nnz);
  for (Index t = 0; t < nb; ++t) {
    normalise(t);
    if (static_cast<Index>(row.size()) != c.row_ptr[t + 1] - c.row_ptr[t]) {
      throw std::logic_error("BlockSparseBuilder: row_blocks is not deterministic");
    }
    for (std::size_t a = 0; a < row.size(); ++a) {
      const Index k = c.row_ptr[t] + static_cast<Index>(a);
      c.col_idx[k] = static_cast<std::int32_t>(row[a].col);
      c.kind[k] = row[a].kind;
      c.lo[k] = row[a].lo;
      c.hi[k] = row[a].hi;
    }
  }
  layout_.components.push_back(std::move(c));
}

std::int32_t BlockSparseBuilder::add_bitmask(const std::vector<std::uint8_t>& bits) {
  const Index b = layout_.block, words = layout_.words_per_bitmask;
  if (static_cast<Index>(bits.size()) != b * b) {
    throw std::logic_error("BlockSparseBuilder: bitmask of " + std::to_string(bits.size()) +
                           " bits, expected block^2");
  }
  std::vector<std::uint64_t> packed(words, 0);
  for (Index a = 0; a < b * b; ++a) {
    if (bits[a]) packed[a / 64] |= std::uint64_t(1) << (a % 64);
  }
  // Identical masks share an id (boundary blocks of periodic patterns repeat).
  const Index n = layout_.bitmasks();
  for (Index id = 0; id < n; ++id) {
    if (std::equal(packed.begin(), packed.end(), layout_.bitmask_words.begin() + id * words)) {
      return static_cast<std::int32_t>(id);
    }
  }
  layout_.bitmask_words.insert(layout_.bitmask_words.end(), packed.begin(), packed.end());
  return static_cast<std::int32_t>(n);
}

namespace {
void set_positions(std::vector<Index> positions, Index L, const char* what, std::vector<Index>& out,
                   std::vector<std::uint8_t>& flag) {
  std::sort(positions.begin(), positions.end());
  positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
  for (Index x : positions) {
    if (x < 0 || x >= L) {
      throw std::logic_error(std::string("BlockSparseBuilder: ") + what + " position " +
                             std::to_string(x) + " outside [0, " + std::to_string(L) + ")");
    }
  }
  out = std::move(positions);
  out.shrink_to_fit();
  flag.clear();
  if (!out.empty()) {
    flag.assign(L, 0);
    for (Index x : out) flag[x] = 1;
  }
}
}  // namespace

void BlockSparseBuilder::set_global_rows(std::vector<Index> positions) {
  set_positions(std::move(positions), layout_.length(), "global row", layout_.global_rows,
                layout_.global_row_flag);
}

void BlockSparseBuilder::set_global_cols(std::vector<Index> positions) {
  set_positions(std::move(positions), layout_.length(), "global column", layout_.global_cols,
                layout_.global_col_flag);
}

BlockSparseLayout BlockSparseBuilder::build() {
  if (layout_.components.empty()) add_component(1, [](Index, std::vector<Entry>&) {});
  layout_.bitmask_words.shrink_to_fit();
  layout_.validate();
  return std::move(layout_);
}

void append_band_blocks(Index t, Index block, Index grid_blocks, Index lo, Index hi,
                        std::vector<BlockSparseBuilder::Entry>& out) {
  if (lo != -kBandInf && hi != kBandInf && lo > hi) return;
  const Index b = block;
  // Block (t, c) holds X - Y in [(t - c) b - (b - 1), (t - c) b + (b - 1)].
  const Index c_min = hi == kBandInf ? 0 : std::max<Index>(0, t - floor_div(hi + b - 1, b));
  const Index c_max =
      lo == -kBandInf ? grid_blocks - 1 : std::min(grid_blocks - 1, t + floor_div(b - 1 - lo, b));
  for (Index c = c_min; c <= c_max; ++c) {
    const Index d_min = (t - c) * b - (b - 1), d_max = (t - c) * b + (b - 1);
    const bool lo_ok = lo == -kBandInf || d_min >= lo;
    const bool hi_ok = hi == kBandInf || d_max <= hi;
    if ((lo != -kBandInf && d_max < lo) || (hi != kBandInf && d_min > hi)) continue;
    if (lo_ok && hi_ok) {
      out.push_back({c, BlockKind::kFull, 0, 0});
    } else if (lo == 0 && hi_ok) {
      out.push_back({c, BlockKind::kDiagCausal, 0, 0});
    } else {
      out.push_back(
          {c, BlockKind::kBand, static_cast<std::int32_t>(lo), static_cast<std::int32_t>(hi)});
    }
  }
}

void append_interval_blocks(BlockSparseBuilder& builder, Index t, Index extent,
                            const std::function<std::pair<Index, Index>(Index X)>& interval,
                            std::vector<BlockSparseBuilder::Entry>& out) {
  const Index b = builder.block();
  const Index x0 = t * b, x1 = std::min(extent, x0 + b);
  if (x1 <= x0) return;
  std::vector<Index> a(x1 - x0), e(x1 - x0);
  Index c_min = std::numeric_limits<Index>::max(), c_max = -1;
  for (Index X = x0; X < x1; ++X) {
    auto [lo, hi] = interval(X);
    lo = std::max<Index>(lo, 0);
    hi = std::min(hi, extent);
    a[X - x0] = lo;
    e[X - x0] = std::max(hi, lo);
    if (hi > lo) {
      c_min = std::min(c_min, lo / b);
      c_max = std::max(c_max, (hi - 1) / b);
    }
  }
  for (Index c = c_min; c <= c_max; ++c) {
    const Index y0 = c * b, y1 = std::min(extent, y0 + b);
    // Clipped interval of row X in this block; [ca, ce) with ce == ca when empty.
    auto clip = [&](Index X, Index& ca, Index& ce) {
      ca = std::clamp(a[X - x0], y0, y1);
      ce = std::clamp(e[X - x0], y0, y1);
      if (ce < ca) ce = ca;
    };
    bool any = false, full = true;
    Index lo = std::numeric_limits<Index>::max(), hi = std::numeric_limits<Index>::min();
    for (Index X = x0; X < x1; ++X) {
      Index ca, ce;
      clip(X, ca, ce);
      full = full && ca == y0 && ce == y1;
      if (ce > ca) {
        any = true;
        lo = std::min(lo, X - (ce - 1));
        hi = std::max(hi, X - ca);
      }
    }
    if (!any) continue;
    if (full) {
      out.push_back({c, BlockKind::kFull, 0, 0});
      continue;
    }
    // A band reproduces every row exactly, or the block needs a bitmask.
    bool band = true;
    for (Index X = x0; X < x1 && band; ++X) {
      Index ca, ce;
      clip(X, ca, ce);
      Index ba = std::clamp(X - hi, y0, y1), be = std::clamp(X - lo + 1, y0, y1);
      if (be < ba) be = ba;
      band = (ce - ca == 0 && be - ba == 0) || (ca == ba && ce == be);
    }
    if (band) {
      const Index d_max = x1 - 1 - y0;
      if (lo == 0 && hi >= d_max) {
        out.push_back({c, BlockKind::kDiagCausal, 0, 0});
      } else {
        out.push_back(
            {c, BlockKind::kBand, static_cast<std::int32_t>(lo), static_cast<std::int32_t>(hi)});
      }
      continue;
    }
    std::vector<std::uint8_t> bits(b * b, 0);
    for (Index X = x0; X < x1; ++X) {
      Index ca, ce;
      clip(X, ca, ce);
      for (Index Y = ca; Y < ce; ++Y) bits[(X - x0) * b + (Y - y0)] = 1;
    }
    out.push_back({c, BlockKind::kBitmask, builder.add_bitmask(bits), 0});
  }
}

// ---------------------------------------------------------------------------------------------
// Work and cost

std::vector<BlockSparseAttention::RowTile> block_sparse_row_tiles(const BlockSparseLayout& lay,
                                                                  Index dilation) {
  std::vector<BlockSparseAttention::RowTile> tiles;
  const Index b = lay.block, L = lay.length(), qs = L - lay.n_q;
  for (Index r = 0; r < std::min(dilation, L); ++r) {
    const ResidueRange rr = residue_range(lay, dilation, r);
    if (rr.x_hi <= rr.x_lo) continue;
    for (Index t = rr.x_lo / b; t * b < rr.x_hi; ++t) {
      const Index x0 = std::max(t * b, rr.x_lo), x1 = std::min((t + 1) * b, rr.x_hi);
      if (x1 > x0) tiles.push_back({r, t, x0, x1 - x0, r + dilation * x0 - qs});
    }
  }
  return tiles;
}

namespace {

// Computed and allowed pairs of one layout (one head, one batch entry).
BlockSparseWork layout_work(const BlockSparseLayout& lay, bool with_pattern) {
  BlockSparseWork w;
  const Index b = lay.block, L = lay.length(), qs = L - lay.n_q, ks = L - lay.n_k;
  const Index run_blocks = run_cols_for(b) / b;
  const bool has_gcols = !lay.global_cols.empty();
  auto is_grow = [&](Index x) { return !lay.global_row_flag.empty() && lay.global_row_flag[x]; };
  auto is_gcol = [&](Index y) { return has_gcols && lay.global_col_flag[y]; };
  // Global columns y with ks <= y <= x (all real global columns when not causal).
  auto gcols_upto = [&](Index x) {
    const auto first = std::lower_bound(lay.global_cols.begin(), lay.global_cols.end(), ks);
    const auto last = lay.causal
                          ? std::upper_bound(lay.global_cols.begin(), lay.global_cols.end(), x)
                          : lay.global_cols.end();
    return std::max<Index>(0, last - first);
  };
  for (std::size_t ci = 0; ci < lay.components.size(); ++ci) {
    const auto& c = lay.components[ci];
    const Index dil = c.dilation;
    // Per residue: prefix counts of global columns over dilated key coordinates.
    std::vector<std::vector<Index>> gprefix;
    if (with_pattern && has_gcols) {
      gprefix.resize(std::min(dil, L));
      for (Index r = 0; r < std::min(dil, L); ++r) {
        const Index m = ceil_div(L - r, dil);
        gprefix[r].assign(m + 1, 0);
        for (Index Y = 0; Y < m; ++Y) gprefix[r][Y + 1] = gprefix[r][Y] + is_gcol(r + dil * Y);
      }
    }
    for (const auto& tile : block_sparse_row_tiles(lay, dil)) {
      const Index r = tile.residue;
      for_each_run(lay, c, tile, run_blocks, [&](const Run& run) {
        if (has_gcols) {
          bool all_global = true;
          for (Index Y = run.y0; Y < run.y1 && all_global; ++Y) all_global = is_gcol(r + dil * Y);
          if (all_global) return;
        }
        w.computed_scores += double(tile.rows) * double(run.y1 - run.y0);
        if (!with_pattern) return;
        for (Index k = run.k0; k < run.k1; ++k) {
          const Index yb0 = std::max<Index>(Index(c.col_idx[k]) * b, run.y0);
          const Index yb1 = std::min<Index>((Index(c.col_idx[k]) + 1) * b, run.y1);
          for (Index X = tile.x0; X < tile.x0 + tile.rows; ++X) {
            if (is_grow(r + dil * X)) continue;
            if (c.kind[k] == BlockKind::kBitmask) {
              for (Index Y = yb0; Y < yb1; ++Y) {
                w.pattern_scores +=
                    kind_allows(lay, c, k, tile.block_row, X, Y) && !is_gcol(r + dil * Y);
              }
              continue;
            }
            Index a, e;
            row_interval(c.kind[k], c.lo[k], c.hi[k], lay.causal, X, yb0, yb1, a, e);
            double n = double(e - a);
            if (has_gcols) n -= double(gprefix[r][e] - gprefix[r][a]);
            w.pattern_scores += n;
          }
        }
      });
      if (ci == 0 && has_gcols) {
        const Index x_last = r + dil * (tile.x0 + tile.rows - 1);
        const double g = double(gcols_upto(x_last));
        w.computed_scores += double(tile.rows) * g;
        w.global_scores += double(tile.rows) * g;
        if (with_pattern) {
          for (Index X = tile.x0; X < tile.x0 + tile.rows; ++X) {
            if (!is_grow(r + dil * X)) w.pattern_scores += double(gcols_upto(r + dil * X));
          }
        }
      }
    }
    w.nnz_blocks += double(c.nnz());
  }
  // Global rows: tiles of b consecutive (in sorted order) real query rows, dense over the keys.
  std::vector<Index> rows;
  for (Index x : lay.global_rows) {
    if (x >= qs) rows.push_back(x);
  }
  for (std::size_t a = 0; a < rows.size(); a += b) {
    const std::size_t e = std::min(rows.size(), a + std::size_t(b));
    const Index x_max = rows[e - 1];
    const Index keys = lay.causal ? std::clamp<Index>(x_max - ks + 1, 0, lay.n_k) : lay.n_k;
    w.computed_scores += double(e - a) * double(keys);
    w.global_scores += double(e - a) * double(keys);
    if (with_pattern) {
      for (std::size_t g = a; g < e; ++g) {
        w.pattern_scores +=
            double(lay.causal ? std::clamp<Index>(rows[g] - ks + 1, 0, lay.n_k) : lay.n_k);
      }
    }
  }
  return w;
}

}  // namespace

BlockSparseWork block_sparse_work(const Problem& p,
                                  const std::vector<std::shared_ptr<const BlockSparseLayout>>& ls,
                                  bool with_pattern_scores) {
  BlockSparseWork total;
  for (const auto& lay : ls) {
    const BlockSparseWork w = layout_work(*lay, with_pattern_scores);
    const double copies = double(p.batch) * (ls.size() == 1 ? double(p.heads) : 1.0);
    total.computed_scores += copies * w.computed_scores;
    total.pattern_scores += copies * w.pattern_scores;
    total.global_scores += copies * w.global_scores;
    total.nnz_blocks += (ls.size() == 1 ? double(p.heads) : 1.0) * w.nnz_blocks;
  }
  return total;
}

Cost block_sparse_cost(const Problem& p,
                       const std::vector<std::shared_ptr<const BlockSparseLayout>>& ls,
                       int threads) {
  const BlockSparseWork w = block_sparse_work(p, ls, false);
  double layout_bytes = 0;
  Index block = 1;
  bool multi = false;
  std::vector<const BlockSparseLayout*> seen;  // heads may share a layout: count it once
  for (const auto& lay : ls) {
    block = lay->block;
    multi = multi || lay->components.size() > 1;
    if (std::find(seen.begin(), seen.end(), lay.get()) != seen.end()) continue;
    seen.push_back(lay.get());
    layout_bytes += lay->memory_bytes();
  }
  const Index run = run_cols_for(block);
  const double tile = double(FlashTile::workspace_bytes(block, run, p.d, p.d_v));
  const double b = double(block), r = double(run);
  const double scratch_floats = b * double(p.d_v) + b + b * double(p.d) + r * double(p.d + p.d_v);
  const double scratch = tile + scratch_floats * sizeof(float) + r * (sizeof(Index) + 1);
  const double lse = multi ? double(p.batch * p.heads * p.n_q) * sizeof(float) : 0.0;
  return Cost{2.0 * double(p.d + p.d_v) * w.computed_scores,
              layout_bytes + double(std::max(threads, 1)) * scratch + lse};
}

// ---------------------------------------------------------------------------------------------
// Kernel

BlockSparseAttention::BlockSparseAttention(std::string name, const Problem& problem,
                                           ParamSet params)
    : Attention(std::move(name), problem, std::move(params)) {}

void BlockSparseAttention::set_layouts(Layouts layouts) {
  const Problem& p = problem();
  if (layouts.size() != 1 && static_cast<Index>(layouts.size()) != p.heads) {
    throw std::logic_error(name() + ": expected 1 or `heads` layouts");
  }
  const BlockSparseLayout& first = *layouts.front();
  for (const auto& lay : layouts) {
    lay->validate();
    if (lay->n_q != p.n_q || lay->n_k != p.n_k || lay->causal != p.causal) {
      throw std::logic_error(name() + ": layout built for another problem");
    }
    // The kernel enumerates row tiles once for all heads.
    bool same = lay->block == first.block && lay->components.size() == first.components.size();
    for (std::size_t c = 0; same && c < first.components.size(); ++c) {
      same = lay->components[c].dilation == first.components[c].dilation;
    }
    if (!same) throw std::logic_error(name() + ": per-head layouts differ in block or dilation");
  }
  layouts_ = std::move(layouts);
  run_cols_ = run_cols_for(first.block);
  tiles_.clear();
  for (const auto& c : first.components)
    tiles_.push_back(block_sparse_row_tiles(first, c.dilation));
  global_queries_.assign(p.heads, {});
  global_tile_start_.assign(p.heads + 1, 0);
  for (Index h = 0; h < p.heads; ++h) {
    const BlockSparseLayout& lay = layout(h);
    for (Index x : lay.global_rows) {
      if (x >= lay.length() - p.n_q) global_queries_[h].push_back(x - (lay.length() - p.n_q));
    }
    global_tile_start_[h + 1] =
        global_tile_start_[h] +
        ceil_div(static_cast<Index>(global_queries_[h].size()), first.block);
  }
  lse_.assign(first.components.size() > 1 ? p.batch * p.heads * p.n_q : 0, 0.0f);
  const Index b = first.block, R = run_cols_;
  workspaces_ = std::make_unique<WorkspacePool<Workspace>>([&] {
    Workspace w;
    w.tile = std::make_unique<FlashTile>(b, R, p.d, p.d_v);
    w.o.assign(b * p.d_v, 0.0f);
    w.lse.assign(b, 0.0f);
    w.qg.assign(b * p.d, 0.0f);
    w.kg.assign(R * p.d, 0.0f);
    w.vg.assign(R * p.d_v, 0.0f);
    w.gpos.assign(R, 0);
    w.valid.assign(R, 0);
    return w;
  });
}

namespace {

// The constraint of an interval kind as a band lo <= X - Y <= hi in dilated coordinates
// (kBandInf = unbounded); the layout's causality adds X - Y >= 0.
struct Band {
  Index lo, hi;
  bool operator==(const Band&) const = default;
};
Band interval_band(BlockKind kind, Index lo, Index hi, bool causal) {
  Band band{-kBandInf, kBandInf};
  if (kind == BlockKind::kDiagCausal) band.lo = 0;
  if (kind == BlockKind::kBand) band = {lo, hi};
  if (causal) band.lo = std::max<Index>(band.lo, 0);
  return band;
}

// The band in the tile kernel's local coordinates for query rows X = x0 + r and keys
// Y = y0 + c: X - Y = (x0 - y0) - (c - r).
TileMask tile_band(const Band& band, Index x0, Index y0) {
  TileMask m;
  if (band.hi != kBandInf) m.diag_min = (x0 - y0) - band.hi;
  if (band.lo != -kBandInf) m.diag_max = (x0 - y0) - band.lo;
  return m;
}

// Bitmask blocks: the pair predicate of one block, tile-local.
struct BitmaskContext {
  const BlockSparseLayout* lay;
  const BlockSparseComponent* comp;
  Index k, block_row, x0, y0;
};
bool bitmask_allows(const void* ctx, Index r, Index c) {
  const auto& b = *static_cast<const BitmaskContext*>(ctx);
  return kind_allows(*b.lay, *b.comp, b.k, b.block_row, b.x0 + r, b.y0 + c);
}

// Causal gathered keys: row r sees the keys whose position is at most its own.
struct PositionsContext {
  const Index* query_pos;  // per tile row, or nullptr: x0 + dil * r
  Index x0, dil;
  const Index* key_pos;  // per tile column, or nullptr: y0 + c
  Index y0;
};
bool positions_allow(const void* ctx, Index r, Index c) {
  const auto& g = *static_cast<const PositionsContext*>(ctx);
  const Index x = g.query_pos ? g.query_pos[r] : g.x0 + g.dil * r;
  return (g.key_pos ? g.key_pos[c] : g.y0 + c) <= x;
}

// Merges a component's (o, lse) into the running result of the earlier components: softmax
// over the union of disjoint key sets is the log-sum-exp-weighted mix of the parts.
void merge_lse(float* out, float& lse, const float* o, float lse_part, Index dv) {
  if (lse_part == kNegInfF) return;
  if (lse == kNegInfF) {
    std::copy(o, o + dv, out);
    lse = lse_part;
    return;
  }
  const float m = std::max(lse, lse_part);
  const float a = std::exp(lse - m), c = std::exp(lse_part - m), sum = a + c;
  for (Index t = 0; t < dv; ++t) out[t] = (a * out[t] + c * o[t]) / sum;
  lse = m + std::log(sum);
}

}  // namespace

void BlockSparseAttention::row_tile(Index comp, const RowTile& tile, Index b, Index h,
                                    const Tensor4& q, const Tensor4& k, const Tensor4& v,
                                    Tensor4& out, const KeyMask& mask, Workspace& w) {
  const Problem& p = problem();
  const BlockSparseLayout& lay = layout(h);
  const BlockSparseComponent& c = lay.components[comp];
  const Index bs = lay.block, dil = c.dilation, R = run_cols_;
  const Index qs = lay.length() - p.n_q, ks = lay.length() - p.n_k;
  const Index r = tile.residue, br = tile.rows, d = p.d, dv = p.d_v;
  const float scale = float(p.effective_scale());
  const float* qt = q.head_data(b, h) + tile.first_query * d;
  const float* kh = k.head_data(b, h);
  const float* vh = v.head_data(b, h);
  float* oh = out.head_data(b, h);
  float* lse_h = lse_.empty() ? nullptr : lse_.data() + (b * p.heads + h) * p.n_q;
  const auto valid = mask.row(b);
  const bool has_gcols = !lay.global_cols.empty();
  const bool has_grows = !lay.global_row_flag.empty();
  FlashTile& ft = *w.tile;
  ft.begin(qt, dil * d, br, scale);

  // Key tiles: maximal spans of consecutive listed blocks with one interval constraint (a run
  // is at most R columns); bitmask blocks go one by one with their pair predicate.
  for_each_run(lay, c, tile, R / bs, [&](const Run& run) {
    Index kk = run.k0;
    while (kk < run.k1) {
      const Index yb0 = std::max<Index>(Index(c.col_idx[kk]) * bs, run.y0);
      Index k_end = kk + 1;
      Band band{};
      const bool bitmask = c.kind[kk] == BlockKind::kBitmask;
      if (!bitmask) {
        band = interval_band(c.kind[kk], c.lo[kk], c.hi[kk], lay.causal);
        while (k_end < run.k1 && c.kind[k_end] != BlockKind::kBitmask &&
               interval_band(c.kind[k_end], c.lo[k_end], c.hi[k_end], lay.causal) == band) {
          ++k_end;
        }
      }
      const Index yb1 = std::min<Index>(Index(c.col_idx[k_end - 1] + 1) * bs, run.y1);
      kk = k_end;
      if (yb1 <= yb0) continue;
      const Index bc = yb1 - yb0;
      const Index j0 = r + dil * yb0 - ks;
      TileMask m;
      BitmaskContext bctx{&lay, &c, k_end - 1, tile.block_row, tile.x0, yb0};
      if (bitmask) {
        m.allowed = bitmask_allows;
        m.ctx = &bctx;
      } else {
        m = tile_band(band, tile.x0, yb0);
      }
      if (!valid.empty() || has_gcols) {
        Index n_valid = 0;
        for (Index cc = 0; cc < bc; ++cc) {
          const Index y = r + dil * (yb0 + cc);
          const bool ok =
              (valid.empty() || valid[y - ks]) && !(has_gcols && lay.global_col_flag[y]);
          w.valid[cc] = ok;
          n_valid += ok;
        }
        if (n_valid == 0) continue;
        if (n_valid < bc) m.key_valid = w.valid.data();
      }
      ft.add_keys(kh + j0 * d, dil * d, vh + j0 * dv, dil * dv, bc, m);
    }
  });

  if (comp == 0 && has_gcols) {
    // Gathered global columns, in chunks of R: every row sees them (causally).
    const Index x_first = r + dil * tile.x0;
    const Index x_last = r + dil * (tile.x0 + br - 1);
    Index n = 0;
    auto flush = [&] {
      if (n == 0) return;
      TileMask m;
      PositionsContext gctx{nullptr, x_first, dil, w.gpos.data(), 0};
      if (lay.causal && w.gpos[n - 1] > x_first) {
        m.allowed = positions_allow;
        m.ctx = &gctx;
      }
      ft.add_keys(w.kg.data(), d, w.vg.data(), dv, n, m);
      n = 0;
    };
    for (Index y : lay.global_cols) {
      if (lay.causal && y > x_last) break;
      const Index j = y - ks;
      if (j < 0 || (!valid.empty() && !valid[j])) continue;
      w.gpos[n] = y;
      std::copy(kh + j * d, kh + (j + 1) * d, w.kg.data() + n * d);
      std::copy(vh + j * dv, vh + (j + 1) * dv, w.vg.data() + n * dv);
      if (++n == R) flush();
    }
    flush();
  }

  ft.finish(w.o.data(), dv, w.lse.data());
  for (Index rr = 0; rr < br; ++rr) {
    const Index i = tile.first_query + rr * dil;
    if (has_grows && lay.global_row_flag[i + qs]) continue;  // owned by the dense pass
    if (comp == 0) {
      std::copy(w.o.data() + rr * dv, w.o.data() + (rr + 1) * dv, oh + i * dv);
      if (lse_h) lse_h[i] = w.lse[rr];
    } else {
      merge_lse(oh + i * dv, lse_h[i], w.o.data() + rr * dv, w.lse[rr], dv);
    }
  }
}

void BlockSparseAttention::global_row_tile(Index h, Index first, Index count, Index b,
                                           const Tensor4& q, const Tensor4& k, const Tensor4& v,
                                           Tensor4& out, const KeyMask& mask, Workspace& w) {
  const Problem& p = problem();
  const BlockSparseLayout& lay = layout(h);
  const Index R = run_cols_, d = p.d, dv = p.d_v;
  const Index qs = lay.length() - p.n_q, ks = lay.length() - p.n_k;
  const float scale = float(p.effective_scale());
  const Index* rows = global_queries_[h].data() + first;
  const float* qh = q.head_data(b, h);
  const float* kh = k.head_data(b, h);
  const float* vh = v.head_data(b, h);
  const auto valid = mask.row(b);
  for (Index rr = 0; rr < count; ++rr) {
    std::copy(qh + rows[rr] * d, qh + (rows[rr] + 1) * d, w.qg.data() + rr * d);
  }
  // Grid positions of the rows, for the causal predicate (key j is at grid position j + ks).
  Index* row_pos = w.gpos.data();
  for (Index rr = 0; rr < count; ++rr) row_pos[rr] = rows[rr] + qs;
  FlashTile& ft = *w.tile;
  ft.begin(w.qg.data(), d, count, scale);
  const Index key_end =
      p.causal ? std::clamp<Index>(rows[count - 1] + qs - ks + 1, 0, p.n_k) : p.n_k;
  for (Index j0 = 0; j0 < key_end; j0 += R) {
    const Index bc = std::min(R, key_end - j0);
    TileMask m;
    if (!valid.empty()) {
      Index n_valid = 0;
      for (Index cc = 0; cc < bc; ++cc) {
        w.valid[cc] = valid[j0 + cc];
        n_valid += w.valid[cc] != 0;
      }
      if (n_valid == 0) continue;
      if (n_valid < bc) m.key_valid = w.valid.data();
    }
    PositionsContext gctx{row_pos, 0, 0, nullptr, j0 + ks};
    // Rows are sorted: the tile needs the predicate only if its first row misses a key.
    if (p.causal && j0 + bc - 1 + ks > row_pos[0]) {
      m.allowed = positions_allow;
      m.ctx = &gctx;
    }
    ft.add_keys(kh + j0 * d, d, vh + j0 * dv, dv, bc, m);
  }
  ft.finish(w.o.data(), dv);
  float* oh = out.head_data(b, h);
  for (Index rr = 0; rr < count; ++rr) {
    std::copy(w.o.data() + rr * dv, w.o.data() + (rr + 1) * dv, oh + rows[rr] * dv);
  }
}

void BlockSparseAttention::compute(const Tensor4& q, const Tensor4& k, const Tensor4& v,
                                   Tensor4& out, const KeyMask& mask) {
  const Problem& p = problem();
  if (layouts_.empty()) throw std::logic_error(name() + ": no layout was set");
  const Index bs = layouts_.front()->block;
  for (std::size_t comp = 0; comp < tiles_.size(); ++comp) {
    const auto& tiles = tiles_[comp];
    const Index nt = static_cast<Index>(tiles.size());
    const Index main_tasks = p.batch * p.heads * nt;
    const Index global_tasks = comp == 0 ? p.batch * global_tile_start_[p.heads] : 0;
    attnbench::parallel_for(
        tbb::blocked_range<Index>(0, main_tasks + global_tasks, 1), [&](const auto& range) {
          Workspace& w = workspaces_->local();
          for (Index task = range.begin(); task < range.end(); ++task) {
            if (task < main_tasks) {
              const Index bh = task / nt, b = bh / p.heads, h = bh % p.heads;
              row_tile(static_cast<Index>(comp), tiles[task % nt], b, h, q, k, v, out, mask, w);
            } else {
              const Index g_all = global_tile_start_[p.heads];
              const Index g = (task - main_tasks) % g_all, b = (task - main_tasks) / g_all;
              const Index h =
                  std::upper_bound(global_tile_start_.begin(), global_tile_start_.end(), g) -
                  global_tile_start_.begin() - 1;
              const Index first = (g - global_tile_start_[h]) * bs;
              const Index count =
                  std::min<Index>(bs, static_cast<Index>(global_queries_[h].size()) - first);
              global_row_tile(h, first, count, b, q, k, v, out, mask, w);
            }
          }
        });
  }
}

Json BlockSparseAttention::diagnostics() const {
  const BlockSparseWork w = block_sparse_work(problem(), layouts_, true);
  const BlockSparseLayout& first = *layouts_.front();
  Json dil = Json::array();
  for (const auto& c : first.components) dil.push_back(c.dilation);
  Index bitmasks = 0;
  std::vector<const BlockSparseLayout*> distinct;  // heads may share a layout
  for (const auto& lay : layouts_) {
    if (std::find(distinct.begin(), distinct.end(), lay.get()) != distinct.end()) continue;
    distinct.push_back(lay.get());
    bitmasks += lay->bitmasks();
  }
  return {
      {"layout_block", first.block},
      {"component_dilations", dil},
      {"distinct_layouts", distinct.size()},
      {"nnz_blocks", w.nnz_blocks},
      {"computed_scores", w.computed_scores},
      {"pattern_scores", w.pattern_scores},
      {"global_scores", w.global_scores},
      {"masked_fraction", w.computed_scores > 0 ? 1.0 - w.pattern_scores / w.computed_scores : 0.0},
      {"global_rows", first.global_rows.size()},
      {"global_cols", first.global_cols.size()},
      {"bitmasks", bitmasks}};
}

}  // namespace attnbench
