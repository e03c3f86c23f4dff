// H-Transformer-1D hierarchical attention, with the authors' (flaxformer) semantics: exact
// near-diagonal blocks, coarser and coarser far blocks, levels merged per row by log-sum-exp.
// Time O(n Nr (d + d_v)), memory O(n (d + d_v)) per head processed at once.
// Zhu & Soricut, "H-Transformer-1D: Fast One-Dimensional Hierarchical Attention for
// Sequences", ACL 2021 (arXiv 2107.11906).
#include <tbb/blocked_range.h>
#include <tbb/task_arena.h>
#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "attention/parallel.h"
#include "attention/registry.h"
#include "variants/hierarchical/h1d_layout.h"
#include "variants/hierarchical/tile_kernel.h"

namespace attnbench {
namespace {

using hierarchical::AlignedFloats;
using hierarchical::H1dGeometry;
using hierarchical::H1dTile;
using hierarchical::KeySegment;
using hierarchical::kNegInf;
using hierarchical::padded_stride;

// Everything one head needs besides its inputs, for coarse levels 1..M-1 (row-major, one
// row per coarse token): level-0 tokens are the inputs, and level-0 states go straight to the
// output. The state of a row (m, z, y) holds every level from the top down to its own.
struct HeadLevels {
  AlignedFloats q, k, v;         // query mean (causal: sample), key mean, value mean
  AlignedFloats bias;            // level 0 (key mask) and 1..M-1: log(count), -inf if count = 0
  AlignedFloats count, inrange;  // valid tokens, real positions (< n) under a token
  AlignedFloats m, z, y;         // merged state: max logit, partition, unnormalised output
};

struct TileWorkspace {
  AlignedFloats qt, st, m_in, m_out, alpha, rowsum, z_in, out_scale;
};

// out = wa a + wb b over n floats (restrict: the rows never overlap, so this vectorises).
inline void weighted_pair(const float* __restrict a, const float* __restrict b, float wa, float wb,
                          float* __restrict out, Index n) {
  for (Index x = 0; x < n; ++x) out[x] = wa * a[x] + wb * b[x];
}

class H1dAttention final : public Attention {
 public:
  H1dAttention(const Problem& p, const ParamSet& params)
      : Attention("h1d", p, params),
        geo_(validated_geometry()),
        ldq_(padded_stride(p.d)),
        ldv_(padded_stride(p.d_v)),
        ldr_(padded_stride(geo_.nr)),
        workspaces_([&] {
          TileWorkspace w;
          w.qt = AlignedFloats(p.d * ldr_);
          w.st = AlignedFloats(3 * geo_.nr * ldr_);
          for (AlignedFloats* a : {&w.m_in, &w.m_out, &w.alpha, &w.rowsum, &w.z_in, &w.out_scale}) {
            *a = AlignedFloats(ldr_);
          }
          return w;
        }) {
    const Index levels = geo_.levels;
    // Offsets per level: coarse rows (levels >= 1) and bias entries (every level).
    row_off_.assign(levels + 1, 0);
    bias_off_.assign(levels + 1, 0);
    for (Index l = 0; l < levels; ++l) {
      const Index real = geo_.real_tokens(l);
      row_off_[l + 1] = row_off_[l] + (l == 0 ? 0 : real);
      bias_off_[l + 1] = bias_off_[l] + real;
    }
    const Index rows = row_off_[levels];
    // Heads are processed in groups of `slots` (one per thread), which bounds these buffers to
    // slots x O(n (d + d_v)) however many heads there are.
    const int threads = tbb::this_task_arena::max_concurrency();
    slots_.resize(std::min<Index>(p.batch * p.heads, threads));
    heads_.resize(slots_.size());
    for (HeadLevels& s : slots_) {
      s.q = AlignedFloats(rows * ldq_);
      s.k = AlignedFloats(rows * ldq_);
      s.v = AlignedFloats(rows * ldv_);
      s.y = AlignedFloats(rows * ldv_);
      s.bias = AlignedFloats(bias_off_[levels]);
      for (AlignedFloats* a : {&s.count, &s.inrange, &s.m, &s.z}) *a = AlignedFloats(rows);
    }
  }

  Json diagnostics() const override {
    return {{"levels", geo_.levels},
            {"padded_length", geo_.padded},
            {"head_groups", Index(slots_.size())},
            {"scores_per_head", hierarchical::h1d_score_count(geo_, problem().causal)}};
  }

 protected:
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    const Problem& p = problem();
    const Index total = p.batch * p.heads;
    const Index group = Index(slots_.size());
    std::vector<HeadRef>& heads = heads_;  // one per slot, allocated in setup
    for (Index first = 0; first < total; first += group) {
      const Index count = std::min(group, total - first);
      for (Index g = 0; g < count; ++g) {
        const Index bh = first + g, b = bh / p.heads, h = bh % p.heads;
        heads[g] = HeadRef{q.head_data(b, h),   k.head_data(b, h), v.head_data(b, h),
                           out.head_data(b, h), mask.row(b),       &slots_[g]};
      }
      // Coarsening: each half of the sequence coarsens independently up to the top level.
      attnbench::parallel_for(tbb::blocked_range<Index>(0, 2 * count, 1), [&](const auto& range) {
        for (Index t = range.begin(); t < range.end(); ++t) coarsen(heads[t / 2], int(t % 2));
      });
      // Top-down: a block's rows need their parent rows merged first; the two top blocks of
      // every head start in parallel and each block spawns its two children.
      const Index top = geo_.levels - 1;
      attnbench::parallel_for(tbb::blocked_range<Index>(0, 2 * count, 1), [&](const auto& range) {
        for (Index t = range.begin(); t < range.end(); ++t) descend(heads[t / 2], top, t % 2);
      });
    }
  }

 private:
  struct HeadRef {
    const float* q = nullptr;
    const float* k = nullptr;
    const float* v = nullptr;
    float* out = nullptr;
    std::span<const std::uint8_t> valid;
    HeadLevels* levels = nullptr;
  };

  H1dGeometry validated_geometry() const {
    const Problem& p = problem();
    const Index nr = params_.get_int("block");
    if (p.n_q != p.n_k) {
      throw std::invalid_argument(
          "h1d: n_q = " + std::to_string(p.n_q) + " differs from n_k = " + std::to_string(p.n_k) +
          "; the token hierarchy is built over one sequence, so queries and keys must have the "
          "same length (" +
          p.to_string() + ")");
    }
    if (nr % 2 != 0) {
      reject("block", nr, "an even block size Nr (the levels split blocks in halves)");
    }
    if (nr > p.n_k) {
      reject("block", nr,
             "Nr <= n = " + std::to_string(p.n_k) + " (one block must fit the sequence)");
    }
    return hierarchical::h1d_geometry(p.n_k, nr);
  }

  float* qc(HeadLevels& s, Index l) const { return s.q.data() + row_off_[l] * ldq_; }
  float* kc(HeadLevels& s, Index l) const { return s.k.data() + row_off_[l] * ldq_; }
  float* vc(HeadLevels& s, Index l) const { return s.v.data() + row_off_[l] * ldv_; }
  float* yc(HeadLevels& s, Index l) const { return s.y.data() + row_off_[l] * ldv_; }
  float* bias(HeadLevels& s, Index l) const { return s.bias.data() + bias_off_[l]; }
  float* at(AlignedFloats& a, Index l) const { return a.data() + row_off_[l]; }

  // Valid-token count and real-position count of token t of level l (0 beyond the real ones).
  std::pair<float, float> counts(const HeadRef& head, Index l, Index t) const {
    if (t >= geo_.real_tokens(l)) return {0.0f, 0.0f};
    if (l == 0) return {head.valid.empty() || head.valid[t] ? 1.0f : 0.0f, 1.0f};
    return {at(head.levels->count, l)[t], at(head.levels->inrange, l)[t]};
  }

  // Level 0: turns the key mask into a bias. Levels l >= 1, tokens [half L_l / 2,
  // (half + 1) L_l / 2) from level l - 1: key and value means over valid tokens with their
  // count (the value sum is count x mean), query means over valid tokens (non-causal) or the
  // sample of the first position (causal).
  void coarsen(const HeadRef& head, int half) const {
    const Problem& p = problem();
    HeadLevels& s = *head.levels;
    const Index d = p.d, dv = p.d_v;
    if (!head.valid.empty()) {
      const Index half_tokens = geo_.level_tokens(0) / 2;
      const Index end = std::min((half + 1) * half_tokens, p.n_k);
      float* b0 = bias(s, 0);
      for (Index j = half * half_tokens; j < end; ++j) b0[j] = head.valid[j] ? 0.0f : kNegInf;
    }
    for (Index l = 1; l < geo_.levels; ++l) {
      const Index half_tokens = geo_.level_tokens(l) / 2;
      const Index begin = half * half_tokens;
      const Index end = std::min((half + 1) * half_tokens, geo_.real_tokens(l));
      const float full_bias = float(double(l) * std::numbers::ln2);  // log 2^l
      const float* q_prev = l == 1 ? head.q : qc(s, l - 1);
      const float* k_prev = l == 1 ? head.k : kc(s, l - 1);
      const float* v_prev = l == 1 ? head.v : vc(s, l - 1);
      const Index ldq_prev = l == 1 ? d : ldq_, ldv_prev = l == 1 ? dv : ldv_;
      for (Index t = begin; t < end; ++t) {
        const Index a = 2 * t, b = 2 * t + 1;
        const auto [ca, ra] = counts(head, l - 1, a);
        const auto [cb, rb] = counts(head, l - 1, b);
        const Index bb = rb > 0 ? b : a;  // never read a row past the real ones
        const float c = ca + cb;
        at(s.count, l)[t] = c;
        at(s.inrange, l)[t] = ra + rb;
        bias(s, l)[t] = c <= 0 ? kNegInf : c == float(Index(1) << l) ? full_bias : std::log(c);
        const float wa = c > 0 ? ca / c : 0.0f, wb = c > 0 ? cb / c : 0.0f;
        weighted_pair(k_prev + a * ldq_prev, k_prev + bb * ldq_prev, wa, wb, kc(s, l) + t * ldq_,
                      d);
        weighted_pair(v_prev + a * ldv_prev, v_prev + bb * ldv_prev, wa, wb, vc(s, l) + t * ldv_,
                      dv);
        const float* qa = q_prev + a * ldq_prev;
        const float* qb = q_prev + bb * ldq_prev;
        float* qt = qc(s, l) + t * ldq_;
        if (p.causal) {
          // Sampling the first position keeps the future out of every row of the group; a
          // padding token's query is zeroed first, as flaxformer does.
          if (l == 1 && ca == 0) {
            std::fill(qt, qt + d, 0.0f);
          } else {
            std::copy(qa, qa + d, qt);
          }
        } else {
          // Mean over valid tokens; a group of padding tokens only (whose rows are outputs of
          // padding positions) falls back to the mean over its real positions.
          float qwa = wa, qwb = wb;
          if (c <= 0) {
            qwa = ra / (ra + rb), qwb = rb / (ra + rb);
          }
          weighted_pair(qa, qb, qwa, qwb, qt, d);
        }
      }
    }
  }

  void descend(const HeadRef& head, Index level, Index block) const {
    for (int half = 0; half < hierarchical::h1d_tiles_per_block(level); ++half) {
      const H1dTile tile = hierarchical::h1d_tile(geo_, level, block, half, problem().causal);
      if (tile.rows() > 0) run_tile(head, tile);
    }
    if (level == 0) return;
    if (level <= 2) {
      // Small subtrees (at most 4 level-0 blocks) run in order: a task would cost more than
      // it saves.
      descend(head, level - 1, 2 * block);
      descend(head, level - 1, 2 * block + 1);
    } else {
      attnbench::parallel_invoke([&] { descend(head, level - 1, 2 * block); },
                                 [&] { descend(head, level - 1, 2 * block + 1); });
    }
  }

  // One tile: scores against its key ranges, merged into the parent rows' state.
  void run_tile(const HeadRef& head, const H1dTile& tile) const {
    const Problem& p = problem();
    HeadLevels& s = *head.levels;
    TileWorkspace& w = workspaces_.local();
    const Index l = tile.level, rows = tile.rows(), r0 = tile.row_begin;
    const Index d = p.d, dv = p.d_v;

    // One key segment per range (row-major keys and values, contiguous).
    KeySegment segments[2];
    const bool has_bias = l > 0 || !head.valid.empty();
    for (int r = 0; r < tile.ranges; ++r) {
      const Index c = tile.key_begin[r];
      KeySegment& seg = segments[r];
      seg.k = l == 0 ? head.k + c * d : kc(s, l) + c * ldq_;
      seg.ldk = l == 0 ? d : ldq_;
      seg.v = l == 0 ? head.v + c * dv : vc(s, l) + c * ldv_;
      seg.ldv = l == 0 ? dv : ldv_;
      seg.bias = has_bias ? bias(s, l) + c : nullptr;
      seg.count = tile.key_end[r] - c;
    }
    const std::span<const KeySegment> segs(segments, static_cast<std::size_t>(tile.ranges));
    const Index cols = tile.keys();
    float* qt = w.qt.data();
    const float* q = l == 0 ? head.q + r0 * d : qc(s, l) + r0 * ldq_;
    hierarchical::transpose(q, l == 0 ? d : ldq_, rows, d, qt, ldr_);
    float* st = w.st.data();
    hierarchical::tile_scores(qt, ldr_, rows, d, float(p.effective_scale()), segs, st, ldr_);
    if (tile.causal_diagonal) {
      // Key kb + c is excluded for rows r0 + r < kb + c.
      const Index kb = tile.key_begin[0];
      for (Index c = 0; c < cols; ++c) {
        const Index excluded = std::clamp<Index>(kb + c - r0, 0, rows);
        std::fill(st + c * ldr_, st + c * ldr_ + excluded, kNegInf);
      }
    }

    // The parent state: row r of level l sits under row r / 2 of level l + 1.
    const bool has_parent = l + 1 < geo_.levels;
    float* m_in = nullptr;
    float* z_in = w.z_in.data();
    if (has_parent) {
      m_in = w.m_in.data();
      const float* pm = at(s.m, l + 1);
      const float* pz = at(s.z, l + 1);
      for (Index r = 0; r < rows; ++r) {
        m_in[r] = pm[(r0 + r) >> 1];
        z_in[r] = pz[(r0 + r) >> 1];
      }
    }
    float* alpha = w.alpha.data();
    float* z = w.rowsum.data();
    float* m_out = w.m_out.data();
    hierarchical::tile_softmax(st, ldr_, rows, cols, m_in, m_out, alpha, z);
    if (has_parent) {
      for (Index r = 0; r < rows; ++r) z[r] += alpha[r] * z_in[r];
    }

    hierarchical::ValueTarget target;
    if (has_parent) {
      target.y_in = yc(s, l + 1);
      target.ld_in = ldv_;
      target.in_first = r0;
      target.in_shift = 1;
      target.alpha = alpha;
    }
    if (l > 0) {
      std::copy(m_out, m_out + rows, at(s.m, l) + r0);
      std::copy(z, z + rows, at(s.z, l) + r0);
      target.y_out = yc(s, l) + r0 * ldv_;
      target.ld_out = ldv_;
    } else {
      // Level 0 normalises straight into the output; a row with no allowed key gets zeros.
      float* inv = w.out_scale.data();
      for (Index r = 0; r < rows; ++r) inv[r] = z[r] > 0.0f ? 1.0f / z[r] : 0.0f;
      target.y_out = head.out + r0 * dv;
      target.ld_out = dv;
      target.out_scale = inv;
    }
    hierarchical::tile_values(st, ldr_, rows, segs, dv, target);
  }

  H1dGeometry geo_;
  Index ldq_ = 0, ldv_ = 0, ldr_ = 0;
  std::vector<Index> row_off_, bias_off_;
  std::vector<HeadLevels> slots_;
  std::vector<HeadRef> heads_;
  mutable WorkspacePool<TileWorkspace> workspaces_;
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(h1d) {
  VariantInfo info;
  info.summary =
      "H-Transformer-1D hierarchical attention (authors' semantics): exact near blocks, "
      "coarsened far blocks, O(n Nr d)";
  info.paper = "Zhu & Soricut, H-Transformer-1D, ACL 2021 (arXiv 2107.11906)";
  info.traits.family = "hierarchical";
  info.traits.time_complexity = "O(n Nr (d + d_v))";
  info.traits.memory_complexity = "O(n (d + d_v)) per concurrently processed head";
  info.params = {
      ParamSpec::integer("block", 32, 2, 1 << 20,
                         "block size Nr (even, <= n): level-0 blocks are exact Nr x Nr, each "
                         "coarse level halves the resolution; the sequence is padded to Nr 2^M"),
  };
  info.make = make_factory<H1dAttention>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const Index nr = s.get_int("block");
    if (nr < 2 || nr % 2 != 0 || nr > p.n_k) return Cost{};
    const H1dGeometry g = hierarchical::h1d_geometry(p.n_k, nr);
    const double scores = hierarchical::h1d_score_count(g, p.causal);
    // Coarsening: a weighted pair mean per coarse token of q, k and v; a transpose of each
    // tile's queries.
    double coarse_rows = 0;
    for (Index l = 1; l < g.levels; ++l) coarse_rows += double(g.real_tokens(l));
    const double heads = double(p.batch * p.heads);
    const double flops =
        heads * (2.0 * scores * double(p.d + p.d_v) + 3.0 * coarse_rows * double(2 * p.d + p.d_v));
    // Per head slot (min(heads, threads) of them): coarse queries, keys, values and states,
    // counts and biases; per thread: transposed queries and scores of one tile.
    const double ldq = double(padded_stride(p.d)), ldv = double(padded_stride(p.d_v));
    const double ldr = double(padded_stride(nr));
    const double slot = coarse_rows * (2 * ldq + 2 * ldv + 5) + double(g.real_tokens(0));
    const double tile = ldr * (double(p.d) + 3.0 * nr + 6);
    const double slots = std::min<double>(heads, threads);
    return Cost{flops, (slots * slot + threads * tile) * sizeof(float)};
  };
  return info;
}

}  // namespace attnbench
