// FlashAttention-style exact attention: tiled online softmax, never materialising the score
// matrix. Time O(n_q n_k (d + d_v)) (about half when causal), memory O(block_q (d + block_k +
// d_v) + block_k d_v) per thread. Dao et al., FlashAttention, 2022; Dao, FlashAttention-2, 2023.
#include <tbb/blocked_range.h>
#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "attention/online_softmax.h"
#include "attention/parallel.h"
#include "attention/registry.h"

namespace attnbench {
namespace {

// The Eigen tile path (score_tile / online_softmax_update), kept as the baseline the SIMD kernel
// is measured against and as a second implementation of the shared tile API.
struct EigenWorkspace {
  std::vector<float> s, m, l, acc;
};

const std::vector<std::string> kKernelChoices = {"auto", "avx512", "avx2", "portable", "eigen"};

// "auto" resolves to the fastest kernel built for this machine.
std::string resolve_kernel(const std::string& name) {
  return name == "auto" ? std::string(to_string(best_kernel_isa())) : name;
}

KernelIsa kernel_isa(const std::string& resolved) {
  if (resolved == "avx512") return KernelIsa::kAvx512;
  if (resolved == "avx2") return KernelIsa::kAvx2;
  return KernelIsa::kPortable;
}

class FlashAttention final : public Attention {
 public:
  FlashAttention(const Problem& p, const ParamSet& params)
      : Attention("flash", p, params),
        block_q_(std::min<Index>(params.get_int("block_q"), p.n_q)),
        block_k_(std::min<Index>(params.get_int("block_k"), p.n_k)),
        kernel_(resolve_kernel(params.get_string("kernel"))),
        eigen_(kernel_ == "eigen") {
    if (!eigen_ && !kernel_isa_available(kernel_isa(kernel_))) {
      reject("kernel", kernel_,
             std::string("a kernel built for this machine: auto, ") + to_string(best_kernel_isa()) +
                 (best_kernel_isa() == KernelIsa::kAvx512 ? ", avx2, portable or eigen"
                  : best_kernel_isa() == KernelIsa::kAvx2 ? ", portable or eigen"
                                                          : " or eigen"));
    }
    // Tiles are clipped to the sequence; resolved_params() reports the sizes and kernel used.
    params_.set("block_q", block_q_);
    params_.set("block_k", block_k_);
    params_.set("kernel", kernel_);
    if (eigen_) {
      eigen_workspaces_ = WorkspacePool<EigenWorkspace>([&] {
        EigenWorkspace w;
        w.s.assign(block_q_ * block_k_, 0.0f);
        w.m.assign(block_q_, 0.0f);
        w.l.assign(block_q_, 0.0f);
        w.acc.assign(block_q_ * p.d_v, 0.0f);
        return w;
      });
    } else {
      tiles_ = WorkspacePool<FlashTile>(
          [&] { return FlashTile(block_q_, block_k_, p.d, p.d_v, kernel_isa(kernel_)); });
    }
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
    // Grain 1: tiles are ~1 ms of work each, and causal tiles differ in cost.
    attnbench::parallel_for(tbb::blocked_range<Index>(0, total, 1), [&](const auto& range) {
      Index computed = 0, masked = 0;
      for (Index t = range.begin(); t < range.end(); ++t) {
        const Index bh = t / q_tiles, b = bh / p.heads, h = bh % p.heads;
        const Index i0 = (t % q_tiles) * block_q_;
        const Heads in{q.head_data(b, h), k.head_data(b, h), v.head_data(b, h), mask.row(b)};
        if (eigen_) {
          eigen_query_tile(in, out.head_data(b, h), i0, eigen_workspaces_.local(), computed,
                           masked);
        } else {
          query_tile(in, out.head_data(b, h), i0, tiles_.local(), computed, masked);
        }
      }
      tiles_computed_ += computed;
      tiles_masked_ += masked;
    });
  }

 private:
  // One head: q (n_q, d), k (n_k, d), v (n_k, d_v); valid is empty or n_k key flags.
  struct Heads {
    const float *q, *k, *v;
    std::span<const std::uint8_t> valid;
  };

  // Causal (bottom-right): row i sees keys j <= i + off. Key tiles past the last row's limit
  // are never computed; only tiles crossing the first row's limit need an element mask.
  Index key_end(Index i0, Index br) const {
    const Problem& p = problem();
    return p.causal ? std::clamp<Index>(i0 + br - 1 + (p.n_k - p.n_q) + 1, 0, p.n_k) : p.n_k;
  }

  // Rows [i0, i0 + br) with the fused SIMD kernel.
  void query_tile(const Heads& in, float* out, Index i0, FlashTile& ft, Index& computed,
                  Index& masked) const {
    const Problem& p = problem();
    const Index br = std::min(block_q_, p.n_q - i0);
    const Index off = p.n_k - p.n_q;
    ft.begin(in.q + i0 * p.d, p.d, br, float(p.effective_scale()));
    const Index end = key_end(i0, br);
    for (Index j0 = 0; j0 < end; j0 += block_k_) {
      const Index bc = std::min(block_k_, end - j0);
      TileMask tm;
      bool any_mask = false;
      if (p.causal && j0 + bc - 1 > i0 + off) {
        tm.diag_max = i0 + off - j0;
        any_mask = true;
      }
      if (!in.valid.empty()) {
        const std::uint8_t* valid = in.valid.data() + j0;
        const Index n_valid = std::count_if(valid, valid + bc, [](std::uint8_t x) { return x; });
        if (n_valid == 0) continue;  // a fully padded key tile contributes nothing
        if (n_valid < bc) {
          tm.key_valid = valid;
          any_mask = true;
        }
      }
      ft.add_keys(in.k + j0 * p.d, p.d, in.v + j0 * p.d_v, p.d_v, bc, tm);
      ++computed;
      masked += any_mask;
    }
    ft.finish(out + i0 * p.d_v, p.d_v);
  }

  // Rows [i0, i0 + br) through the shared tile API (Eigen products, scalar softmax).
  void eigen_query_tile(const Heads& in, float* out, Index i0, EigenWorkspace& w, Index& computed,
                        Index& masked) const {
    const Problem& p = problem();
    const Index br = std::min(block_q_, p.n_q - i0);
    const float scale = float(p.effective_scale());
    SoftmaxTile tile{w.m.data(), w.l.data(), w.acc.data(), p.d_v, br, p.d_v};
    tile.reset();
    const Index off = p.n_k - p.n_q;
    const Index end = key_end(i0, br);
    for (Index j0 = 0; j0 < end; j0 += block_k_) {
      const Index bc = std::min(block_k_, end - j0);
      float* s = w.s.data();
      score_tile(in.q + i0 * p.d, p.d, br, in.k + j0 * p.d, p.d, bc, p.d, scale, s, block_k_);
      bool any_mask = false;
      if (p.causal && j0 + bc - 1 > i0 + off) {
        any_mask = true;
        for (Index r = 0; r < br; ++r) {
          const Index first_excluded = std::clamp<Index>(i0 + r + off + 1 - j0, 0, bc);
          std::fill(s + r * block_k_ + first_excluded, s + r * block_k_ + bc, kNegInfF);
        }
      }
      if (!in.valid.empty()) {
        for (Index c = 0; c < bc; ++c) {
          if (in.valid[j0 + c]) continue;
          any_mask = true;
          for (Index r = 0; r < br; ++r) s[r * block_k_ + c] = kNegInfF;
        }
      }
      online_softmax_update(tile, s, block_k_, bc, in.v + j0 * p.d_v, p.d_v);
      ++computed;
      masked += any_mask;
    }
    online_softmax_finish(tile, out + i0 * p.d_v, p.d_v);
  }

  Index block_q_, block_k_;
  std::string kernel_;
  bool eigen_;
  WorkspacePool<FlashTile> tiles_;
  WorkspacePool<EigenWorkspace> eigen_workspaces_;
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
  info.traits.memory_complexity = "O(block_q (d + block_k + d_v) + block_k d_v) per thread";
  // 96 x 96 tiles: the best of a sweep of {32 .. 256} x {32 .. 512} on AVX2 (Zen 3). The score
  // kernel re-reads Q^T (block_q x d) from L1 for every key block, so block_q d stays near
  // 24 KB; per-tile costs (the V panel copy, accumulator rescale) want both sides large. Both
  // are multiples of the register blocks (6 and 16 on AVX2, 8 and 32 on AVX-512).
  info.params = {
      ParamSpec::integer("block_q", 96, 1, 65536, "query tile rows (Br); clipped to n_q"),
      ParamSpec::integer("block_k", 96, 1, 65536, "key tile columns (Bc); clipped to n_k"),
      ParamSpec::choice("kernel", "auto", kKernelChoices,
                        "tile kernel: auto (fastest built), avx512, avx2, portable (scalar "
                        "fallback), or eigen (Eigen tile products and scalar softmax, the "
                        "baseline); resolved to the one used"),
  };
  info.make = make_factory<FlashAttention>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const Index bq = std::min<Index>(s.get_int("block_q"), p.n_q);
    const Index bk = std::min<Index>(s.get_int("block_k"), p.n_k);
    double pairs = double(p.n_q) * double(p.n_k);
    if (p.causal) {
      // Scores on or below the (bottom-right) diagonal.
      const double off = double(p.n_k - p.n_q);
      double sum = 0;
      for (Index i = 0; i < p.n_q; ++i) sum += std::clamp(double(i) + off + 1, 0.0, double(p.n_k));
      pairs = sum;
    }
    const std::string kernel = resolve_kernel(s.get_string("kernel"));
    double per_thread = 0;
    if (kernel == "eigen") {
      per_thread = double(bq * bk + bq * (2 + p.d_v)) * sizeof(float);
    } else if (kernel_isa_available(kernel_isa(kernel))) {
      per_thread = double(FlashTile::workspace_bytes(bq, bk, p.d, p.d_v, kernel_isa(kernel)));
    }
    return Cost{double(p.batch * p.heads) * 2.0 * pairs * double(p.d + p.d_v),
                double(threads) * per_thread};
  };
  return info;
}

}  // namespace attnbench
