// Two-level hierarchical baseline: exact attention to the query's own block and its neighbours,
// plus one pooled key (mean key, mean value, count factor) for every other block.
// Time O(n (3b + n/b) (d + d_v)), minimal at b ~ sqrt(n); memory O((n/b)(d + d_v)) per head.
// A single coarse level of H-Transformer-1D (Zhu & Soricut, ACL 2021, arXiv 2107.11906).
#include <tbb/blocked_range.h>
#include <algorithm>
#include <cmath>
#include <vector>

#include "attention/parallel.h"
#include "attention/registry.h"
#include "variants/hierarchical/tile_kernel.h"

namespace attnbench {
namespace {

using hierarchical::AlignedFloats;
using hierarchical::KeySegment;
using hierarchical::kNegInf;
using hierarchical::padded_stride;

// b = 2^round(log2 sqrt(n)), clipped to [1, n].
Index default_block(Index n) {
  const double e = std::round(0.5 * std::log2(double(std::max<Index>(n, 1))));
  return std::clamp<Index>(Index(1) << Index(e), 1, n);
}

// The key ranges of query block t: exact keys [exact_begin, exact_end) (the block and its
// neighbours; causal: the left neighbour and the block, masked j <= i) and pooled blocks
// [0, left_end) and [right_begin, blocks) (causal: the left part only).
struct PooledTile {
  Index row_begin, row_end;
  Index exact_begin, exact_end;
  Index left_end, right_begin;
};

PooledTile pooled_tile(Index n, Index b, Index blocks, Index t, bool causal) {
  PooledTile tile;
  tile.row_begin = t * b;
  tile.row_end = std::min(n, (t + 1) * b);
  tile.exact_begin = std::max<Index>(0, (t - 1) * b);
  tile.exact_end = std::min(n, (causal ? t + 1 : t + 2) * b);
  tile.left_end = std::max<Index>(0, t - 1);
  tile.right_begin = causal ? blocks : std::min(blocks, t + 2);
  return tile;
}

struct PooledWorkspace {
  AlignedFloats qt, st, m_out, alpha, rowsum, out_scale, key_bias;
};

class PooledAttention final : public Attention {
 public:
  PooledAttention(const Problem& p, const ParamSet& params)
      : Attention("pooled", p, params),
        b_(validated_block()),
        blocks_((p.n_k + b_ - 1) / b_),
        ldq_(padded_stride(p.d)),
        ldv_(padded_stride(p.d_v)),
        ldr_(padded_stride(b_)),
        pooled_k_(p.batch * p.heads * blocks_ * ldq_),
        pooled_v_(p.batch * p.heads * blocks_ * ldv_),
        pooled_bias_(p.batch * p.heads * blocks_),
        workspaces_([&] {
          PooledWorkspace w;
          w.qt = AlignedFloats(p.d * ldr_);
          w.st = AlignedFloats((3 * b_ + blocks_) * ldr_);
          for (AlignedFloats* a : {&w.m_out, &w.alpha, &w.rowsum, &w.out_scale}) {
            *a = AlignedFloats(ldr_);
          }
          w.key_bias = AlignedFloats(3 * b_);
          return w;
        }) {
    params_.set("block", b_);
  }

  Json diagnostics() const override { return {{"block", b_}, {"blocks", blocks_}}; }

 protected:
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    const Problem& p = problem();
    const Index total = p.batch * p.heads * blocks_;
    // Pool every block of every head, then attend; the pooled keys of a head are shared by all
    // its query blocks.
    attnbench::parallel_for(tbb::blocked_range<Index>(0, total, 4), [&](const auto& range) {
      for (Index t = range.begin(); t < range.end(); ++t) {
        const Index bh = t / blocks_, b = bh / p.heads, h = bh % p.heads;
        pool_block(k.head_data(b, h), v.head_data(b, h), mask.row(b), bh, t % blocks_);
      }
    });
    attnbench::parallel_for(tbb::blocked_range<Index>(0, total, 1), [&](const auto& range) {
      for (Index t = range.begin(); t < range.end(); ++t) {
        const Index bh = t / blocks_, b = bh / p.heads, h = bh % p.heads;
        query_block(q.head_data(b, h), k.head_data(b, h), v.head_data(b, h), mask.row(b),
                    out.head_data(b, h), bh, t % blocks_);
      }
    });
  }

 private:
  Index validated_block() const {
    const Problem& p = problem();
    if (p.n_q != p.n_k) {
      throw std::invalid_argument(
          "pooled: n_q = " + std::to_string(p.n_q) +
          " differs from n_k = " + std::to_string(p.n_k) +
          "; query and key blocks share one token axis, so the lengths must be equal (" +
          p.to_string() + ")");
    }
    if (params_.is_auto("block")) return default_block(p.n_k);
    const Index b = params_.get_int("block");
    if (b > p.n_k)
      reject("block", b, "b <= n = " + std::to_string(p.n_k) + " (one block must fit)");
    return b;
  }

  // Mean key and mean value over the block's valid keys; bias log(count) is the count factor
  // (weight count x exp(s) for the block's summed values), -inf for a block of padding only.
  void pool_block(const float* k, const float* v, std::span<const std::uint8_t> valid, Index bh,
                  Index block) {
    const Problem& p = problem();
    float* kb = pooled_k_.data() + (bh * blocks_ + block) * ldq_;
    float* vb = pooled_v_.data() + (bh * blocks_ + block) * ldv_;
    std::fill(kb, kb + p.d, 0.0f);
    std::fill(vb, vb + p.d_v, 0.0f);
    const Index begin = block * b_, end = std::min(p.n_k, begin + b_);
    Index count = 0;
    for (Index j = begin; j < end; ++j) {
      if (!valid.empty() && !valid[j]) continue;
      ++count;
      for (Index x = 0; x < p.d; ++x) kb[x] += k[j * p.d + x];
      for (Index x = 0; x < p.d_v; ++x) vb[x] += v[j * p.d_v + x];
    }
    if (count > 0) {
      const float inv = 1.0f / float(count);
      for (Index x = 0; x < p.d; ++x) kb[x] *= inv;
      for (Index x = 0; x < p.d_v; ++x) vb[x] *= inv;
    }
    pooled_bias_.data()[bh * blocks_ + block] = count > 0 ? std::log(float(count)) : kNegInf;
  }

  void query_block(const float* q, const float* k, const float* v,
                   std::span<const std::uint8_t> valid, float* out, Index bh, Index t) {
    const Problem& p = problem();
    PooledWorkspace& w = workspaces_.local();
    const PooledTile tile = pooled_tile(p.n_k, b_, blocks_, t, p.causal);
    const Index rows = tile.row_end - tile.row_begin;
    KeySegment segs[3];
    int count = 0;
    const Index exact = tile.exact_end - tile.exact_begin;
    const float* exact_bias = nullptr;
    if (!valid.empty()) {
      float* kbias = w.key_bias.data();
      for (Index j = 0; j < exact; ++j) kbias[j] = valid[tile.exact_begin + j] ? 0.0f : kNegInf;
      exact_bias = kbias;
    }
    segs[count++] = KeySegment{
        k + tile.exact_begin * p.d, p.d, v + tile.exact_begin * p.d_v, p.d_v, exact_bias, exact};
    const float* pk = pooled_k_.data() + bh * blocks_ * ldq_;
    const float* pv = pooled_v_.data() + bh * blocks_ * ldv_;
    const float* pb = pooled_bias_.data() + bh * blocks_;
    if (tile.left_end > 0) {
      segs[count++] = KeySegment{pk, ldq_, pv, ldv_, pb, tile.left_end};
    }
    if (tile.right_begin < blocks_) {
      const Index c = tile.right_begin;
      segs[count++] = KeySegment{pk + c * ldq_, ldq_, pv + c * ldv_, ldv_, pb + c, blocks_ - c};
    }
    const std::span<const KeySegment> span(segs, static_cast<std::size_t>(count));
    Index cols = 0;
    for (const KeySegment& s : span) cols += s.count;
    float* qt = w.qt.data();
    hierarchical::transpose(q + tile.row_begin * p.d, p.d, rows, p.d, qt, ldr_);
    float* st = w.st.data();
    hierarchical::tile_scores(qt, ldr_, rows, p.d, float(p.effective_scale()), span, st, ldr_);
    if (p.causal) {
      // Exact keys come first in the tile: key exact_begin + c is excluded for rows
      // row_begin + r < exact_begin + c.
      for (Index c = 0; c < exact; ++c) {
        const Index excluded = std::clamp<Index>(tile.exact_begin + c - tile.row_begin, 0, rows);
        std::fill(st + c * ldr_, st + c * ldr_ + excluded, kNegInf);
      }
    }
    float* z = w.rowsum.data();
    hierarchical::tile_softmax(st, ldr_, rows, cols, nullptr, w.m_out.data(), w.alpha.data(), z);
    float* inv = w.out_scale.data();
    for (Index r = 0; r < rows; ++r) inv[r] = z[r] > 0.0f ? 1.0f / z[r] : 0.0f;  // zeros if empty
    hierarchical::ValueTarget target;
    target.y_out = out + tile.row_begin * p.d_v;
    target.ld_out = p.d_v;
    target.out_scale = inv;
    hierarchical::tile_values(st, ldr_, rows, span, p.d_v, target);
  }

  Index b_ = 1, blocks_ = 1, ldq_ = 0, ldv_ = 0, ldr_ = 0;
  AlignedFloats pooled_k_, pooled_v_, pooled_bias_;
  WorkspacePool<PooledWorkspace> workspaces_;
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(pooled) {
  VariantInfo info;
  info.summary =
      "two-level hierarchical baseline: exact neighbour blocks plus one pooled key per distant "
      "block (with its count factor)";
  info.paper = "single coarse level of Zhu & Soricut, H-Transformer-1D, ACL 2021";
  info.traits.family = "hierarchical";
  info.traits.time_complexity = "O(n (3b + n/b) (d + d_v)), O(n^1.5 d) at b = sqrt(n)";
  info.traits.memory_complexity = "O((n/b)(d + d_v)) per head + O(b (3b + n/b)) per thread";
  info.params = {
      ParamSpec::integer("block", nullptr, 1, 1 << 24,
                         "block size b (<= n): exact attention within the query's block and its "
                         "two neighbours, one pooled key per other block",
                         "2^round(log2 sqrt(n)), clipped to n"),
  };
  info.make = make_factory<PooledAttention>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const Index n = p.n_k;
    const Index b = s.is_auto("block") ? default_block(n) : s.get_int("block");
    if (b < 1 || b > n) return Cost{};
    const Index blocks = (n + b - 1) / b;
    double scores = 0;
    for (Index t = 0; t < blocks; ++t) {
      const PooledTile tile = pooled_tile(n, b, blocks, t, p.causal);
      const double keys =
          double(tile.exact_end - tile.exact_begin + tile.left_end + (blocks - tile.right_begin));
      scores += double(tile.row_end - tile.row_begin) * keys;
    }
    const double heads = double(p.batch * p.heads);
    const double flops =
        heads * (2.0 * scores * double(p.d + p.d_v) + double(n) * double(p.d + p.d_v));
    const double ldq = double(padded_stride(p.d)), ldv = double(padded_stride(p.d_v));
    const double pooled = heads * double(blocks) * (ldq + ldv + 1);
    const double ldr = double(padded_stride(b));
    const double tile = ldr * (double(p.d) + double(3 * b + blocks) + 4) + 3.0 * b;
    return Cost{flops, (pooled + threads * tile) * sizeof(float)};
  };
  return info;
}

}  // namespace attnbench
