// FlashAttention-style exact attention: tiled online softmax, never materialising the score
// matrix. Time O(n_q n_k (d + d_v)) (about half when causal), memory O(block_q block_k) scratch
// per thread. Dao et al., "FlashAttention", NeurIPS 2022; Dao, "FlashAttention-2", 2023.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <algorithm>
#include <atomic>
#include <vector>

#include "attention/online_softmax.h"
#include "attention/registry.h"

namespace attnbench {
namespace {

struct FlashWorkspace {
  std::vector<float> s, m, l, acc;
};

class FlashAttention final : public Attention {
 public:
  FlashAttention(const Problem& p, const ParamSet& params)
      : Attention("flash", p, params),
        block_q_(std::min<Index>(params.get_int("block_q"), p.n_q)),
        block_k_(std::min<Index>(params.get_int("block_k"), p.n_k)),
        workspaces_([&] {
          FlashWorkspace w;
          w.s.assign(block_q_ * block_k_, 0.0f);
          w.m.assign(block_q_, 0.0f);
          w.l.assign(block_q_, 0.0f);
          w.acc.assign(block_q_ * p.d_v, 0.0f);
          return w;
        }) {
    // Tiles are clipped to the sequence; resolved_params() reports the sizes used.
    params_.set("block_q", block_q_);
    params_.set("block_k", block_k_);
  }

  Json diagnostics() const override {
    return {{"tiles_computed", tiles_computed_.load()}, {"tiles_masked", tiles_masked_.load()}};
  }

 protected:
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    const Problem& p = problem();
    const Index q_tiles = (p.n_q + block_q_ - 1) / block_q_;
    const Index total = p.batch * p.heads * q_tiles;
    tiles_computed_ = 0;
    tiles_masked_ = 0;
    tbb::parallel_for(tbb::blocked_range<Index>(0, total, 1), [&](const auto& range) {
      FlashWorkspace& w = workspaces_.local();
      Index computed = 0, masked = 0;
      for (Index t = range.begin(); t < range.end(); ++t) {
        const Index bh = t / q_tiles, b = bh / p.heads, h = bh % p.heads;
        const Index i0 = (t % q_tiles) * block_q_;
        query_tile(q.head_data(b, h), k.head_data(b, h), v.head_data(b, h), mask.row(b),
                   out.head_data(b, h), i0, w, computed, masked);
      }
      tiles_computed_ += computed;
      tiles_masked_ += masked;
    });
  }

 private:
  // Rows [i0, i0 + br) of one head. q (n_q, d), k (n_k, d), v (n_k, d_v), out (n_q, d_v).
  void query_tile(const float* q, const float* k, const float* v,
                  std::span<const std::uint8_t> valid, float* out, Index i0, FlashWorkspace& w,
                  Index& computed, Index& masked) const {
    const Problem& p = problem();
    const Index br = std::min(block_q_, p.n_q - i0);
    const float scale = float(p.effective_scale());
    SoftmaxTile tile{w.m.data(), w.l.data(), w.acc.data(), p.d_v, br, p.d_v};
    tile.reset();
    // Causal (bottom-right): row i sees keys j <= i + off. Tiles past the last row's limit are
    // never computed; only tiles crossing the first row's limit need an element mask.
    const Index off = p.n_k - p.n_q;
    const Index key_end = p.causal ? std::clamp<Index>(i0 + br - 1 + off + 1, 0, p.n_k) : p.n_k;
    for (Index j0 = 0; j0 < key_end; j0 += block_k_) {
      const Index bc = std::min(block_k_, key_end - j0);
      float* s = w.s.data();
      score_tile(q + i0 * p.d, p.d, br, k + j0 * p.d, p.d, bc, p.d, scale, s, block_k_);
      bool any_mask = false;
      if (p.causal && j0 + bc - 1 > i0 + off) {
        any_mask = true;
        for (Index r = 0; r < br; ++r) {
          const Index first_excluded = std::clamp<Index>(i0 + r + off + 1 - j0, 0, bc);
          std::fill(s + r * block_k_ + first_excluded, s + r * block_k_ + bc, kNegInfF);
        }
      }
      if (!valid.empty()) {
        for (Index c = 0; c < bc; ++c) {
          if (valid[j0 + c]) continue;
          any_mask = true;
          for (Index r = 0; r < br; ++r) s[r * block_k_ + c] = kNegInfF;
        }
      }
      online_softmax_update(tile, s, block_k_, bc, v + j0 * p.d_v, p.d_v);
      ++computed;
      masked += any_mask;
    }
    online_softmax_finish(tile, out + i0 * p.d_v, p.d_v);
  }

  Index block_q_, block_k_;
  WorkspacePool<FlashWorkspace> workspaces_;
  std::atomic<Index> tiles_computed_{0}, tiles_masked_{0};
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(flash) {
  VariantInfo info;
  info.summary = "exact attention by tiled online softmax (FlashAttention-2 on CPU), O(n) memory";
  info.paper = "Dao et al., FlashAttention, NeurIPS 2022; Dao, FlashAttention-2, ICLR 2024";
  info.traits.family = "exact";
  info.traits.exact = true;
  info.traits.time_complexity = "O(n_q n_k (d + d_v))";
  info.traits.memory_complexity = "O(block_q block_k) per thread";
  info.params = {
      ParamSpec::integer("block_q", 64, 1, 65536, "query tile rows (Br); clipped to n_q"),
      ParamSpec::integer("block_k", 128, 1, 65536, "key tile columns (Bc); clipped to n_k"),
  };
  info.make = make_factory<FlashAttention>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const double bq = double(std::min<Index>(s.get_int("block_q"), p.n_q));
    const double bk = double(std::min<Index>(s.get_int("block_k"), p.n_k));
    double pairs = double(p.n_q) * double(p.n_k);
    if (p.causal) {
      // Scores on or below the (bottom-right) diagonal.
      const double off = double(p.n_k - p.n_q);
      double sum = 0;
      for (Index i = 0; i < p.n_q; ++i) sum += std::clamp(double(i) + off + 1, 0.0, double(p.n_k));
      pairs = sum;
    }
    return Cost{double(p.batch * p.heads) * 2.0 * pairs * double(p.d + p.d_v),
                double(threads) * (bq * bk + bq * (2 + p.d_v)) * sizeof(float)};
  };
  return info;
}

}  // namespace attnbench
