// H-Transformer-1D hierarchical attention, with the authors' (flaxformer) semantics: exact
// near-diagonal blocks, coarser and coarser far blocks, levels merged per row by log-sum-exp.
// Time O(n Nr (d + d_v)), memory O(n (d + d_v)) per head processed at once.
// Zhu & Soricut, "H-Transformer-1D: Fast One-Dimensional Hierarchical Attention for
// Sequences", ACL 2021 (arXiv 2107.11906).
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_invoke.h>
#include <tbb/task_arena.h>
#include <algorithm>
#include <cmath>
#include <vector>

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

// Coarse levels 1..M-1 of one head: the coarsened tokens and each row's running state
// (m, z, y) once every level from the top down to this one has been merged into it.
// Level-0 tokens are the inputs themselves and level-0 states go straight to the output.
struct HeadLevels {
  AlignedFloats q, k, v;  // (rows, ld) per level: query mean (or sample), key mean, value mean
  AlignedFloats bias;     // log(count): the count factor; -inf for a token of padding only
  AlignedFloats count, inrange;  // valid tokens, and real positions (< n), under each coarse token
  AlignedFloats m, z, y;         // running state: max logit, partition, unnormalised output
};

struct TileWorkspace {
  AlignedFloats s, acc, m_in, m_out, alpha, rowsum, z_in, key_bias;
};

class H1dAttention final : public Attention {
 public:
  H1dAttention(const Problem& p, const ParamSet& params)
      : Attention("h1d", p, params),
        geo_(validated_geometry()),
        ldq_(padded_stride(p.d)),
        ldv_(padded_stride(p.d_v)),
        lds_(padded_stride(3 * geo_.nr)),
        workspaces_([&] {
          const Index nr = geo_.nr;
          TileWorkspace w;
          w.s = AlignedFloats(nr * lds_);
          w.acc = AlignedFloats(nr * ldv_);
          for (AlignedFloats* a : {&w.m_in, &w.m_out, &w.alpha, &w.rowsum, &w.z_in}) {
            *a = AlignedFloats(nr);
          }
          w.key_bias = AlignedFloats(3 * nr);
          return w;
        }) {
    // Level offsets (in rows) of the coarse buffers; only tokens holding a real position are kept.
    offset_.assign(geo_.levels + 1, 0);
    for (Index l = 1; l < geo_.levels; ++l) offset_[l + 1] = offset_[l] + geo_.real_tokens(l);
    const Index coarse_rows = offset_[geo_.levels];
    // Heads are processed in groups of `slots` (one per thread), which bounds the coarse
    // buffers to slots x O(n (d + d_v)) however many heads there are.
    const int threads = tbb::this_task_arena::max_concurrency();
    slots_.resize(std::min<Index>(p.batch * p.heads, threads));
    for (HeadLevels& s : slots_) {
      s.q = AlignedFloats(coarse_rows * ldq_);
      s.k = AlignedFloats(coarse_rows * ldq_);
      s.v = AlignedFloats(coarse_rows * ldv_);
      s.y = AlignedFloats(coarse_rows * ldv_);
      for (AlignedFloats* a : {&s.bias, &s.count, &s.inrange, &s.m, &s.z}) {
        *a = AlignedFloats(coarse_rows);
      }
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
    for (Index first = 0; first < total; first += group) {
      const Index count = std::min(group, total - first);
      std::vector<HeadRef> heads;  // small: at most one entry per thread
      heads.reserve(static_cast<std::size_t>(count));
      for (Index g = 0; g < count; ++g) {
        const Index bh = first + g, b = bh / p.heads, h = bh % p.heads;
        heads.push_back(HeadRef{q.head_data(b, h), k.head_data(b, h), v.head_data(b, h),
                                out.head_data(b, h), mask.row(b), &slots_[g]});
      }
      if (geo_.levels > 1) {
        // Coarsening: each half of the sequence coarsens independently up to the top level.
        tbb::parallel_for(tbb::blocked_range<Index>(0, 2 * count, 1), [&](const auto& range) {
          for (Index t = range.begin(); t < range.end(); ++t) coarsen(heads[t / 2], t % 2);
        });
      }
      // Top-down: a block's rows need their parent rows merged first; the two top blocks of
      // every head start in parallel and each block spawns its two children.
      const Index top = geo_.levels - 1;
      tbb::parallel_for(tbb::blocked_range<Index>(0, 2 * count, 1), [&](const auto& range) {
        for (Index t = range.begin(); t < range.end(); ++t) descend(heads[t / 2], top, t % 2);
      });
    }
  }

 private:
  struct HeadRef {
    const float* q;
    const float* k;
    const float* v;
    float* out;
    std::span<const std::uint8_t> valid;
    HeadLevels* levels;
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

  float* qc(HeadLevels& s, Index l) const { return s.q.data() + offset_[l] * ldq_; }
  float* kc(HeadLevels& s, Index l) const { return s.k.data() + offset_[l] * ldq_; }
  float* vc(HeadLevels& s, Index l) const { return s.v.data() + offset_[l] * ldv_; }
  float* yc(HeadLevels& s, Index l) const { return s.y.data() + offset_[l] * ldv_; }
  float* at(AlignedFloats& a, Index l) const { return a.data() + offset_[l]; }

  // Coarsens tokens [half L_l / 2, (half + 1) L_l / 2) of every level l >= 1 from level l - 1:
  // key and value means over valid tokens with their count (the value sum is count x mean),
  // query means over valid tokens (non-causal) or the sample of the first position (causal).
  void coarsen(const HeadRef& head, int half) const {
    const Problem& p = problem();
    HeadLevels& s = *head.levels;
    const Index d = p.d, dv = p.d_v;
    for (Index l = 1; l < geo_.levels; ++l) {
      const Index half_tokens = geo_.level_tokens(l) / 2;
      const Index begin = half * half_tokens;
      const Index end = std::min((half + 1) * half_tokens, geo_.real_tokens(l));
      float* qo = qc(s, l);
      float* ko = kc(s, l);
      float* vo = vc(s, l);
      float* bias = at(s.bias, l);
      float* cnt = at(s.count, l);
      float* inr = at(s.inrange, l);
      for (Index t = begin; t < end; ++t) {
        const float *qa, *qb, *ka, *kb, *va, *vb;
        float ca, cb, ra, rb;
        const Index a = 2 * t, b = 2 * t + 1;
        if (l == 1) {
          // Level-0 children are the inputs; positions >= n are the padding of L.
          ra = 1.0f;
          rb = b < p.n_k ? 1.0f : 0.0f;
          ca = head.valid.empty() || head.valid[a] ? ra : 0.0f;
          cb = rb > 0 && (head.valid.empty() || head.valid[b]) ? 1.0f : 0.0f;
          const Index bb = std::min(b, p.n_k - 1);  // never read past the input
          qa = head.q + a * d, qb = head.q + bb * d;
          ka = head.k + a * d, kb = head.k + bb * d;
          va = head.v + a * dv, vb = head.v + bb * dv;
        } else {
          const Index real = geo_.real_tokens(l - 1);
          const Index bb = std::min(b, real - 1);
          ra = at(s.inrange, l - 1)[a];
          rb = b < real ? at(s.inrange, l - 1)[b] : 0.0f;
          ca = at(s.count, l - 1)[a];
          cb = b < real ? at(s.count, l - 1)[b] : 0.0f;
          qa = qc(s, l - 1) + a * ldq_, qb = qc(s, l - 1) + bb * ldq_;
          ka = kc(s, l - 1) + a * ldq_, kb = kc(s, l - 1) + bb * ldq_;
          va = vc(s, l - 1) + a * ldv_, vb = vc(s, l - 1) + bb * ldv_;
        }
        const float c = ca + cb;
        cnt[t] = c;
        inr[t] = ra + rb;
        float* qt = qo + t * ldq_;
        float* kt = ko + t * ldq_;
        float* vt = vo + t * ldv_;
        if (c > 0) {
          const float wa = ca / c, wb = cb / c;
          for (Index x = 0; x < d; ++x) kt[x] = wa * ka[x] + wb * kb[x];
          for (Index x = 0; x < dv; ++x) vt[x] = wa * va[x] + wb * vb[x];
          bias[t] = std::log(c);
        } else {
          std::fill(kt, kt + d, 0.0f);
          std::fill(vt, vt + dv, 0.0f);
          bias[t] = kNegInf;
        }
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
          float wa = 0, wb = 0;
          if (c > 0) {
            wa = ca / c, wb = cb / c;
          } else if (ra + rb > 0) {
            wa = ra / (ra + rb), wb = rb / (ra + rb);
          }
          for (Index x = 0; x < d; ++x) qt[x] = wa * qa[x] + wb * qb[x];
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
      tbb::parallel_invoke([&] { descend(head, level - 1, 2 * block); },
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
    const float scale = float(p.effective_scale());

    KeySegment segments[2];
    const float* q;
    Index ldq;
    if (l == 0) {
      q = head.q + r0 * d, ldq = d;
      Index col = 0;
      for (int r = 0; r < tile.ranges; ++r) {
        const Index kb = tile.key_begin[r], ke = tile.key_end[r];
        const float* bias = nullptr;
        if (!head.valid.empty()) {
          float* kbias = w.key_bias.data() + col;
          for (Index j = kb; j < ke; ++j) kbias[j - kb] = head.valid[j] ? 0.0f : kNegInf;
          bias = kbias;
        }
        segments[r] = KeySegment{head.k + kb * d, d, head.v + kb * dv, dv, bias, ke - kb};
        col += ke - kb;
      }
    } else {
      q = qc(s, l) + r0 * ldq_, ldq = ldq_;
      for (int r = 0; r < tile.ranges; ++r) {
        const Index kb = tile.key_begin[r], ke = tile.key_end[r];
        segments[r] = KeySegment{kc(s, l) + kb * ldq_, ldq_,   vc(s, l) + kb * ldv_, ldv_,
                                 at(s.bias, l) + kb,   ke - kb};
      }
    }
    const std::span<const KeySegment> segs(segments, static_cast<std::size_t>(tile.ranges));
    const Index cols = tile.keys();
    float* sc = w.s.data();
    hierarchical::tile_scores(q, ldq, rows, d, scale, segs, sc, lds_);
    if (tile.causal_diagonal) {
      const Index kb = tile.key_begin[0];
      for (Index r = 0; r < rows; ++r) {
        const Index first_excluded = std::clamp<Index>(r0 + r + 1 - kb, 0, cols);
        std::fill(sc + r * lds_ + first_excluded, sc + r * lds_ + cols, kNegInf);
      }
    }

    // The parent state: row r of level l sits under row r / 2 of level l + 1.
    const bool has_parent = l + 1 < geo_.levels;
    float* m_in = nullptr;
    if (has_parent) {
      m_in = w.m_in.data();
      const float* pm = at(s.m, l + 1);
      const float* pz = at(s.z, l + 1);
      for (Index r = 0; r < rows; ++r) {
        m_in[r] = pm[(r0 + r) >> 1];
        w.z_in.data()[r] = pz[(r0 + r) >> 1];
      }
    }
    float* alpha = w.alpha.data();
    float* rowsum = w.rowsum.data();
    float* m_out = w.m_out.data();
    hierarchical::tile_softmax(sc, lds_, rows, cols, m_in, m_out, alpha, rowsum);
    float* acc = w.acc.data();
    hierarchical::tile_values(sc, lds_, rows, segs, dv, acc, ldv_);

    const float* py = has_parent ? yc(s, l + 1) : nullptr;
    for (Index r = 0; r < rows; ++r) {
      const float a = alpha[r];
      float* y = acc + r * ldv_;
      float z = rowsum[r];
      if (has_parent) {
        const float* yp = py + ((r0 + r) >> 1) * ldv_;
        for (Index x = 0; x < dv; ++x) y[x] += a * yp[x];
        z += a * w.z_in.data()[r];
      }
      if (l > 0) {
        at(s.m, l)[r0 + r] = m_out[r];
        at(s.z, l)[r0 + r] = z;
        std::copy(y, y + dv, yc(s, l) + (r0 + r) * ldv_);
      } else {
        float* o = head.out + (r0 + r) * dv;
        if (z > 0.0f) {
          const float inv = 1.0f / z;
          for (Index x = 0; x < dv; ++x) o[x] = y[x] * inv;
        } else {
          std::fill(o, o + dv, 0.0f);  // no allowed key: zeros, never NaN
        }
      }
    }
  }

  H1dGeometry geo_;
  Index ldq_ = 0, ldv_ = 0, lds_ = 0;
  std::vector<Index> offset_;
  std::vector<HeadLevels> slots_;
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
      ParamSpec::integer(
          "block", 32, 2, 1 << 20,
          "block size Nr (even, <= n): level-0 blocks are exact Nr x Nr, each coarse "
          "level halves the resolution; the sequence is padded to Nr 2^M"),
  };
  info.make = make_factory<H1dAttention>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const Index nr = s.get_int("block");
    if (nr < 2 || nr % 2 != 0 || nr > p.n_k) return Cost{};
    const H1dGeometry g = hierarchical::h1d_geometry(p.n_k, nr);
    const double scores = hierarchical::h1d_score_count(g, p.causal);
    // Coarsening: a weighted pair mean per coarse token of q, k and v.
    double coarse_rows = 0;
    for (Index l = 1; l < g.levels; ++l) coarse_rows += double(g.real_tokens(l));
    const double heads = double(p.batch * p.heads);
    const double flops =
        heads * (2.0 * scores * double(p.d + p.d_v) + 3.0 * coarse_rows * double(2 * p.d + p.d_v));
    // Coarse buffers for min(heads, threads) heads, plus one tile workspace per thread.
    const double ldq = double(padded_stride(p.d)), ldv = double(padded_stride(p.d_v));
    const double slot = coarse_rows * (2 * ldq + 2 * ldv + 5);
    const double tile = double(nr) * (double(padded_stride(3 * nr)) + ldv + 5) + 3.0 * nr;
    const double slots = std::min<double>(heads, threads);
    return Cost{flops, (slots * slot + threads * tile) * sizeof(float)};
  };
  return info;
}

}  // namespace attnbench
