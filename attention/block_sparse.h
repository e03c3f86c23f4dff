// Generic block-sparse attention (reference/variants.md §3.1): a per-head block-CSR layout whose
// blocks carry element kinds (full, causal diagonal, band, bitmask), optional global rows and
// global columns, and ONE kernel that runs the tiled online softmax (online_softmax.h) over the
// listed blocks, the gathered global columns, and a dense pass for global rows.
// Time O(computed blocks * b^2 * (d + d_v) + |G| n (d + d_v)); memory O(nnzb) for the layout plus
// O(b * run + (b + run) (d + d_v)) scratch per thread.
// Child et al. 2019 (arXiv 1904.10509); Beltagy et al. 2020 (Longformer); Zaheer et al. 2020.
//
// Coordinates. Queries and keys share one grid of length L = max(n_q, n_k), aligned at the end
// like the causal mask (bottom-right): query i sits at position x = i + L - n_q, key j at
// y = j + L - n_k, and "causal" means y <= x. A layout is a union of *components*. A component of
// dilation δ splits the grid into δ residue classes; within class r the position x = r + δ X has
// the dilated coordinate X, and blocks are b x b squares of (X, Y) pairs of the same class
// (δ = 1: X = x, the ordinary block grid). Dilation turns strided patterns ((x - y) mod δ = 0)
// into dense blocks, so they cost what they compute (openai's `strided_transpose` idea).
//
// What a layout means (to_dense_mask): pair (i, j) is allowed iff, with x, y as above,
//   (x is a global row) or (y is a global column) or (some component lists the block of (X, Y)
//   and its kind admits the pair), and, for a causal layout, y <= x.
// The kernel counts every allowed pair exactly once: components skip global columns (the gathered
// global pass owns them), component passes never write global rows (their dense pass does), and
// the components of one layout must be disjoint (validate() checks it via to_count_mask()).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "attention/online_softmax.h"
#include "attention/registry.h"

namespace attnbench {

// Block size pattern constructors should prefer when the pattern leaves the choice free: the
// tile kernel's cost per score flattens out at 64 query rows (smaller tiles pay the per-row
// softmax bookkeeping and the GEMM edge cases more often), and a 64 x 256 score tile (64 KiB)
// plus the 64 x d_v accumulator stay in L2 with room for the streamed keys and values.
inline constexpr Index kBlockSparseTile = 64;
// The kernel merges consecutive listed blocks of one block row into a single score tile of at
// most this many key columns (at least one block), so a window of 9 blocks is 3 GEMM calls and 3
// softmax updates, not 9.
inline constexpr Index kBlockSparseRunCols = 256;

enum class BlockKind : std::uint8_t {
  kFull,        // every pair of the block
  kDiagCausal,  // Y <= X: the key is not after the query
  kBand,        // lo <= X - Y <= hi (dilated coordinates)
  kBitmask,     // bit (X - t b) * b + (Y - c b) of bitmask `lo` of the layout's table
};
const char* to_string(BlockKind kind);

inline constexpr std::int32_t kBandInf = std::numeric_limits<std::int32_t>::max();

// One block-CSR component: row_ptr[t]..row_ptr[t + 1] index the blocks of block row t.
struct BlockSparseComponent {
  Index dilation = 1;
  std::vector<Index> row_ptr;         // (row blocks + 1)
  std::vector<std::int32_t> col_idx;  // (nnzb), sorted and unique within a row
  std::vector<BlockKind> kind;        // (nnzb)
  std::vector<std::int32_t> lo, hi;   // (nnzb) band bounds; lo = bitmask id for kBitmask

  Index row_blocks() const { return static_cast<Index>(row_ptr.size()) - 1; }
  Index nnz() const { return static_cast<Index>(col_idx.size()); }
};

struct BlockSparseLayout {
  Index n_q = 0, n_k = 0;
  Index block = 0;  // b
  bool causal = false;
  std::vector<BlockSparseComponent> components;
  // Bitmask table: mask m occupies words [m * words_per_bitmask, (m + 1) * words_per_bitmask).
  std::vector<std::uint64_t> bitmask_words;
  Index words_per_bitmask = 0;
  // Grid positions, sorted and unique; the flags are per grid position (empty when no globals).
  std::vector<Index> global_rows, global_cols;
  std::vector<std::uint8_t> global_row_flag, global_col_flag;

  Index length() const { return std::max(n_q, n_k); }
  Index query_position(Index i) const { return i + length() - n_q; }
  Index key_position(Index j) const { return j + length() - n_k; }
  Index bitmasks() const {
    return words_per_bitmask ? static_cast<Index>(bitmask_words.size()) / words_per_bitmask : 0;
  }
  bool bitmask_bit(Index id, Index r, Index c) const {
    const Index bit = r * block + c;
    return (bitmask_words[id * words_per_bitmask + bit / 64] >> (bit % 64)) & 1u;
  }
  Index nnz_blocks() const;

  // (n_q * n_k, row-major): how many times the kernel counts each pair (0 = excluded). Key
  // padding is not part of a layout. O(n_q n_k) memory: for tests and small inspections.
  std::vector<std::uint8_t> to_count_mask() const;
  // (n_q * n_k, row-major): 1 where the pair is allowed.
  std::vector<std::uint8_t> to_dense_mask() const;
  // Heap bytes held by the layout.
  double memory_bytes() const;
  // Structural checks (sizes, sorted unique columns, kinds, bitmask ids, global positions);
  // throws std::logic_error naming the defect. Does not build the dense mask.
  void validate() const;
};

// Builds a layout: components are described block row by block row; entries may come in any
// order and repeat (a block emitted twice is kept once: identical entries merge, and a FULL entry
// absorbs any other kind); blocks outside the grid are dropped. Two passes (count, then fill) so
// the layout's arrays are allocated once at their final size.
class BlockSparseBuilder {
 public:
  struct Entry {
    Index col;
    BlockKind kind = BlockKind::kFull;
    std::int32_t lo = 0, hi = 0;
  };
  using RowBlocks = std::function<void(Index t, std::vector<Entry>& out)>;

  BlockSparseBuilder(Index n_q, Index n_k, Index block, bool causal);

  Index length() const { return layout_.length(); }
  Index block() const { return layout_.block; }
  // Block rows (= block columns) of a component of dilation δ: ceil(ceil(L / δ) / b).
  Index grid_blocks(Index dilation) const;

  void add_component(Index dilation, const RowBlocks& row_blocks);
  // A b x b bitmask, row-major bits; identical masks share one id.
  std::int32_t add_bitmask(const std::vector<std::uint8_t>& bits);
  // Grid positions in [0, L); sorted and de-duplicated here.
  void set_global_rows(std::vector<Index> positions);
  void set_global_cols(std::vector<Index> positions);

  BlockSparseLayout build();

 private:
  BlockSparseLayout layout_;
};

// Appends the blocks of block row t that meet the band lo <= X - Y <= hi (dilated coordinates;
// kBandInf for an open side), each with the cheapest exact kind: FULL when the whole block lies
// inside the band, DIAG_CAUSAL when only the causal edge cuts it, BAND otherwise.
void append_band_blocks(Index t, Index block, Index grid_blocks, Index lo, Index hi,
                        std::vector<BlockSparseBuilder::Entry>& out);

// Appends the blocks of block row t of a component whose row X admits exactly the dilated keys
// [a, e) returned by interval(X) (one interval per row, e <= a when empty; rows and keys beyond
// `extent` = ceil(L / δ) do not exist). Each block gets the cheapest exact kind: FULL, a band
// (DIAG_CAUSAL or BAND) when the rows' clipped intervals are those of one band, else a bitmask.
// O(b) per candidate block. Causal patterns should cap e at X + 1 so that blocks above the
// diagonal are not listed (the kernel masks them anyway).
void append_interval_blocks(BlockSparseBuilder& builder, Index t, Index extent,
                            const std::function<std::pair<Index, Index>(Index X)>& interval,
                            std::vector<BlockSparseBuilder::Entry>& out);

// Work of one forward, from the layouts alone (key padding ignored).
struct BlockSparseWork {
  double computed_scores = 0;  // score-tile elements evaluated (masked ones included)
  double pattern_scores = 0;   // allowed pairs of the layouts (each counted once)
  double nnz_blocks = 0;       // listed blocks, all heads
  double global_scores = 0;    // part of computed_scores spent on global rows and columns
};
// `layouts` has 1 entry (shared by all heads) or problem.heads entries. Totals over batch and
// heads. computed_scores is O(nnzb) to evaluate; pattern_scores O(nnzb b + L).
BlockSparseWork block_sparse_work(
    const Problem& problem, const std::vector<std::shared_ptr<const BlockSparseLayout>>& layouts,
    bool with_pattern_scores);

// Analytic cost: flops = 2 (d + d_v) per computed score (exp and bookkeeping not counted, like
// flash's model); memory = the distinct layouts + per-thread scratch + the log-sum-exp buffer of
// multi-component layouts.
Cost block_sparse_cost(const Problem& problem,
                       const std::vector<std::shared_ptr<const BlockSparseLayout>>& layouts,
                       int threads);

// The kernel as an Attention: a variant constructs it, validates its parameters, then hands it
// the layouts (built in setup, never in forward). Parallel over (batch, head, residue, block row)
// and (batch, head, global-row tile) with oneTBB; every output row is computed by one task in a
// fixed order, so results are bitwise identical for any thread count.
class BlockSparseAttention : public Attention {
 public:
  using Layouts = std::vector<std::shared_ptr<const BlockSparseLayout>>;

  BlockSparseAttention(std::string name, const Problem& problem, ParamSet params);

  const BlockSparseLayout& layout(Index head) const {
    return *layouts_[layouts_.size() == 1 ? 0 : head];
  }
  const Layouts& layouts() const { return layouts_; }
  // layout_block, components, nnz_blocks, computed_scores, pattern_scores, masked_fraction,
  // global rows/columns, bitmasks.
  Json diagnostics() const override;

 protected:
  // Checks the layouts against the problem and allocates every workspace.
  void set_layouts(Layouts layouts);
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override;

 public:
  // One query tile of a component: rows X0 .. X0 + rows - 1 of residue r in block row t.
  struct RowTile {
    Index residue, block_row, x0, rows, first_query;
  };
  struct Workspace {
    std::unique_ptr<FlashTile> tile;  // (block) query rows x (run columns) keys
    std::vector<float> o, lse, qg, kg, vg;
    std::vector<Index> gpos;
    std::vector<std::uint8_t> valid;
  };

 private:
  void row_tile(Index comp, const RowTile& tile, Index b, Index h, const Tensor4& q,
                const Tensor4& k, const Tensor4& v, Tensor4& out, const KeyMask& mask,
                Workspace& w);
  void global_row_tile(Index h, Index first, Index count, Index b, const Tensor4& q,
                       const Tensor4& k, const Tensor4& v, Tensor4& out, const KeyMask& mask,
                       Workspace& w);

  Layouts layouts_;
  Index run_cols_ = 0;
  std::vector<std::vector<RowTile>> tiles_;         // per component (shared by every head)
  std::vector<std::vector<Index>> global_queries_;  // per head: query indices of global rows
  std::vector<Index> global_tile_start_;  // per head, + total: first global-row tile of the head
  std::vector<float> lse_;                // (batch, heads, n_q) for multi-component layouts
  std::unique_ptr<WorkspacePool<Workspace>> workspaces_;  // made in set_layouts()
};

// Row tiles of a component of dilation δ (exposed for the work count and tests).
std::vector<BlockSparseAttention::RowTile> block_sparse_row_tiles(const BlockSparseLayout& layout,
                                                                  Index dilation);

}  // namespace attnbench
