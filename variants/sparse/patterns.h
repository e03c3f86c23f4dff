// The sparse family's patterns. Each pattern is a constructor of block-sparse layouts (run by the
// one shared kernel, attention/block_sparse.h) plus the element-level mask it means (`allows`),
// so tests can compare the two and the kernel against masked exact attention.
// Time and memory: those of the layouts (see each variant file); layouts are built in setup.
// Child et al. 2019; Beltagy et al. 2020; Zaheer et al. 2020; lucidrains/local-attention.
//
// Every pattern struct has:
//   static constexpr const char* kName;               the variant name
//   static P from_params(const Problem&, const ParamSet&);   validates, resolves auto values
//   Json resolved() const;                             auto parameters with the values used
//   Layouts layouts() const;                           1 (shared) or `heads` layouts
//   bool allows(Index i, Index j, Index head) const;   query i may see key j (pattern, causal)
// Positions: query i and key j sit at x = i + L - n_q and y = j + L - n_k on a grid of length
// L = max(n_q, n_k) (bottom-right alignment, as the causal mask); patterns are defined on x, y.
#pragma once

#include <string>
#include <vector>

#include "attention/block_sparse.h"

namespace attnbench::sparse {

using Layouts = BlockSparseAttention::Layouts;

// Where a pattern lives: the problem's lengths and causality.
struct Grid {
  Index n_q = 0, n_k = 0, heads = 1;
  bool causal = false;
  explicit Grid(const Problem& p) : n_q(p.n_q), n_k(p.n_k), heads(p.heads), causal(p.causal) {}
  Grid() = default;
  Index length() const { return std::max(n_q, n_k); }
  Index x(Index i) const { return i + length() - n_q; }
  Index y(Index j) const { return j + length() - n_k; }
  bool causal_ok(Index i, Index j) const { return !causal || y(j) <= x(i); }
};

// Throws std::invalid_argument "<variant>: parameter '<key>' = <value>, expected <what>
// (<problem>)", the format of Attention::reject, for checks made before the variant object exists
// (cost model).
[[noreturn]] void reject_param(const std::string& variant, const std::string& key,
                               const Json& value, const std::string& expected, const Problem& p);

// Layout block for a band whose rows span about `extent` keys: 64 (kBlockSparseTile) unless the
// band is so narrow that masked work in 64-wide tiles would dominate.
Index block_for_band(Index extent);
// Layout block for a pattern made of segments of length `segment`: 64 when it divides the
// segment (blocks are then FULL or causal diagonals), the segment itself when it is at most 128,
// else 64 with bitmasks on the blocks that straddle segment boundaries.
Index block_for_segments(Index segment);

// `window`: |x - y| <= dilation * width and (x - y) mod dilation = 0 (causal: 0 <= x - y).
struct WindowPattern {
  static constexpr const char* kName = "window";
  Grid grid;
  Index width = 256;  // one-sided, in attended tokens
  Index dilation = 1;
  static WindowPattern from_params(const Problem& p, const ParamSet& s);
  Json resolved() const { return Json::object(); }
  Layouts layouts() const;
  bool allows(Index i, Index j, Index head) const;
};

// `local_blocks`: segment T = floor(x / block) sees segments T - look_backward .. T +
// look_forward; exact_window also requires x - y <= block * look_backward and
// y - x <= block * look_forward.
struct LocalBlocksPattern {
  static constexpr const char* kName = "local_blocks";
  Grid grid;
  Index block = 256, look_backward = 1, look_forward = 1;
  bool exact_window = false;
  bool look_forward_auto = false;
  static LocalBlocksPattern from_params(const Problem& p, const ParamSet& s);
  Json resolved() const;
  Layouts layouts() const;
  bool allows(Index i, Index j, Index head) const;
};

// `strided` (causal): local 0 <= x - y < stride; stride (x - y) mod stride = 0; merged = union.
struct StridedPattern {
  static constexpr const char* kName = "strided";
  enum class Mode { kLocal, kStride, kMerged };
  Grid grid;
  Index stride = 0;
  Mode mode = Mode::kMerged;
  bool stride_auto = false;
  static StridedPattern from_params(const Problem& p, const ParamSet& s);
  Json resolved() const;
  Layouts layouts() const;
  bool allows(Index i, Index j, Index head) const;
};

// `fixed` (causal): local floor(y / block) = floor(x / block); summary: y mod block lies in the
// head's summary cells [block - summary (k + 1), block - summary k), k = head mod
// floor(block / summary) with per_head_offset, else k = 0; merged = union.
struct FixedPattern {
  static constexpr const char* kName = "fixed";
  enum class Mode { kLocal, kSummary, kMerged };
  Grid grid;
  Index block = 128, summary = 16;
  Mode mode = Mode::kMerged;
  bool per_head_offset = false;
  static FixedPattern from_params(const Problem& p, const ParamSet& s);
  Json resolved() const { return Json::object(); }
  Layouts layouts() const;
  bool allows(Index i, Index j, Index head) const;
  Index summary_index(Index head) const;  // k above
};

// `bigbird`: blocks T = floor(x / block), U = floor(y / block), nb = ceil(L / block) blocks:
// T or U in {0, nb - 1} (global), |T - U| <= 1 (window), or U among the head's random blocks of
// row T (drawn without replacement from 1 .. nb - 2 minus the window).
struct BigBirdPattern {
  static constexpr const char* kName = "bigbird";
  Grid grid;
  Index block = 64, random_blocks = 3;
  std::uint64_t seed = 0;
  // random[h][T]: sorted random block columns of block row T for head h.
  std::vector<std::vector<std::vector<Index>>> random;
  Index blocks() const { return (grid.length() + block - 1) / block; }
  static BigBirdPattern from_params(const Problem& p, const ParamSet& s);
  Json resolved() const { return Json::object(); }
  Layouts layouts() const;
  bool allows(Index i, Index j, Index head) const;
};

// `longformer`: window |x - y| <= width (causal: 0 <= x - y <= width), plus global positions G:
// x in G sees every key, every query sees y in G.
struct LongformerPattern {
  static constexpr const char* kName = "longformer";
  Grid grid;
  Index width = 256;
  std::vector<Index> global;  // sorted, unique grid positions
  std::vector<std::uint8_t> is_global;
  static LongformerPattern from_params(const Problem& p, const ParamSet& s);
  Json resolved() const { return Json::object(); }
  Layouts layouts() const;
  bool allows(Index i, Index j, Index head) const;
};

// The Attention object of a pattern: the shared kernel with the pattern's layouts.
template <typename Pattern>
class PatternAttention final : public BlockSparseAttention {
 public:
  PatternAttention(const Problem& p, const ParamSet& s)
      : BlockSparseAttention(Pattern::kName, p, s) {
    const Pattern pattern = Pattern::from_params(problem(), params_);
    const Json resolved = pattern.resolved();
    for (auto it = resolved.begin(); it != resolved.end(); ++it) params_.set(it.key(), *it);
    set_layouts(pattern.layouts());
  }
};

template <typename Pattern>
Cost pattern_cost(const Problem& p, const ParamSet& s, int threads) {
  return block_sparse_cost(p, Pattern::from_params(p, s).layouts(), threads);
}

}  // namespace attnbench::sparse
