// Linformer: keys and values projected along the sequence to length k (K' = E K, V' = E V), then
// exact softmax over the k projected keys. Time O(k (n_q + n_k) (d + d_v)) (jl) or
// O(n_k (d + d_v) + n_q k (d + d_v)) (pool), memory O(k n_k) for the jl matrix plus O(k (d + d_v)).
// Wang et al., "Linformer: Self-Attention with Linear Complexity", 2020.
//
// The paper learns E and F. An untrained benchmark offers `jl` (E with iid N(0, 1/k) entries,
// the Johnson-Lindenstrauss construction of the paper's theory), `pool` (segment means) and
// `identity` (k = n_k, the exact limit). E = F ("key-value sharing", an option of the paper):
// with independent random E and F, projected key r would be paired with an unrelated mixture of
// values. Pool: when segments differ in size (n_k not a multiple of k, or padding), each pooled
// logit gets + log(segment size), the exact weight of a segment of identical keys; with equal
// segments this cancels and the method is the paper's mean pooling. No causal form: every
// projected key mixes keys from the whole sequence.
#include <tbb/blocked_range.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "attention/online_softmax.h"
#include "attention/parallel.h"
#include "attention/random.h"
#include "attention/registry.h"
#include "variants/approximate/approx_common.h"

namespace attnbench {
namespace {

using approx::ConstStridedMap;
using approx::kNegInf;
using approx::Partition;
using approx::StridedMap;

enum class Projection { kJl, kPool, kIdentity };

constexpr Index kKeySpan = 2048;         // keys per partial projection (jl)
constexpr Index kMaxSpans = 32;          // partial projections per head
constexpr Index kScoreBudget = 1 << 15;  // floats of one (rows, k) score block
constexpr Index kMaxRows = 128;          // query rows per block

Projection parse_projection(const std::string& s) {
  if (s == "jl") return Projection::kJl;
  if (s == "pool") return Projection::kPool;
  return Projection::kIdentity;
}

// jl and identity attend over the projected keys with the fused tile kernel of `flash`
// (FlashTile), in flash's default tiles; pool adds a finite per-key bias, which the tile kernel
// does not take, and keeps the Eigen path.
constexpr Index kTileRows = 96;
constexpr Index kTileKeys = 96;

Index query_block_rows(Index k) { return std::clamp<Index>(kScoreBudget / k, 1, kMaxRows); }

struct LinformerWorkspace {
  RowMatrix s;                      // (rows, k) scores (pool)
  RowMatrix kv_rows;                // (span, d + d_v) padded keys and values, masked rows zeroed
  std::unique_ptr<FlashTile> tile;  // (kTileRows, min(k, kTileKeys)) (jl, identity)
};

class Linformer final : public Attention {
 public:
  Linformer(const Problem& p, const ParamSet& params)
      : Attention("linformer", p, params),
        projection_(parse_projection(params.get_string("projection"))),
        k_(params.get_int("k")),
        spans_(approx::make_partition(p.n_k, kKeySpan, kMaxSpans)) {
    if (p.causal) {
      throw std::invalid_argument(
          "linformer: causal = true is not supported: every projected key mixes keys from the "
          "whole sequence (" +
          p.to_string() + ")");
    }
    if (projection_ == Projection::kIdentity) {
      if (k_ != p.n_k)
        reject("k", k_, "k = n_k = " + std::to_string(p.n_k) + " for projection = identity");
    } else if (k_ > p.n_k) {
      k_ = p.n_k;  // more projected rows than keys adds nothing; reported in resolved_params()
      params_.set("k", k_);
    }
    const Index bh = p.batch * p.heads, width = p.d + p.d_v;
    if (projection_ != Projection::kIdentity) {
      kv_proj_.setZero(bh * k_ * width);
    }
    bias_.setZero(bh * k_);
    if (projection_ == Projection::kIdentity && p.key_padding) valid_.assign(bh * k_, 1);
    if (projection_ == Projection::kJl) {
      const auto seed = std::uint64_t(params.get_int("seed"));
      const double sd = 1.0 / std::sqrt(double(k_));
      e_.resize(p.heads);
      for (Index h = 0; h < p.heads; ++h) {
        Rng rng(seed, 0x11f0, std::uint64_t(h));
        e_[h].resize(k_, p.n_k);
        for (Index i = 0; i < e_[h].size(); ++i) e_[h].data()[i] = float(sd * rng.normal());
      }
      partials_.setZero(bh * spans_.parts * k_ * width);
    }
    const Index rows = query_block_rows(k_);
    workspaces_.emplace([&] {
      LinformerWorkspace w;
      if (projection_ == Projection::kPool) {
        w.s.resize(rows, k_);
      } else {
        w.tile = std::make_unique<FlashTile>(kTileRows, std::min(k_, kTileKeys), p.d, p.d_v);
      }
      if (projection_ == Projection::kJl && p.key_padding) {
        w.kv_rows.resize(std::min(p.n_k, (p.n_k + spans_.parts - 1) / spans_.parts + 1), width);
      }
      return w;
    });
  }

 protected:
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    const Problem& p = problem();
    const Index bh_count = p.batch * p.heads;
    if (projection_ == Projection::kJl) {
      project_jl(k, v, mask);
    } else if (projection_ == Projection::kPool) {
      attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count, 1), [&](const auto& r) {
        for (Index bh = r.begin(); bh < r.end(); ++bh) pool(k, v, mask, bh);
      });
    } else {
      for (Index bh = 0; bh < bh_count; ++bh) {
        const auto valid = mask.row(bh / p.heads);
        for (Index j = 0; j < p.n_k; ++j) {
          const bool ok = valid.empty() || valid[j];
          bias_[bh * k_ + j] = ok ? 0.0f : kNegInf;
          if (!valid_.empty()) valid_[bh * k_ + j] = ok;
        }
      }
    }
    const Index rows = projection_ == Projection::kPool ? query_block_rows(k_) : kTileRows;
    const Index q_blocks = (p.n_q + rows - 1) / rows;
    attnbench::parallel_for(
        tbb::blocked_range<Index>(0, bh_count * q_blocks, 1), [&](const auto& r) {
          LinformerWorkspace& w = workspaces_->local();
          for (Index task = r.begin(); task < r.end(); ++task) {
            const Index bh = task / q_blocks, b = bh / p.heads, h = bh % p.heads;
            const Index i0 = (task % q_blocks) * rows, n = std::min(rows, p.n_q - i0);
            attend(q.head_data(b, h) + i0 * p.d, n, bh, k.head_data(b, h), v.head_data(b, h),
                   out.head_data(b, h) + i0 * p.d_v, w);
          }
        });
  }

 private:
  // Identity with key padding: the valid flags of (b, h)'s keys; otherwise null.
  const std::uint8_t* valid_for(Index bh) const {
    return valid_.empty() ? nullptr : valid_.data() + bh * k_;
  }

  // Rows [i0, i0 + n) of one head: softmax(scale q K'^T + bias) V'.
  void attend(const float* q, Index n, Index bh, const float* k, const float* v, float* out,
              LinformerWorkspace& w) const {
    const Problem& p = problem();
    const Index width = p.d + p.d_v;
    const bool identity = projection_ == Projection::kIdentity;
    const float* kp = identity ? k : kv_proj_.data() + bh * k_ * width;
    const float* vp = identity ? v : kp + p.d;
    const Index ldk = identity ? p.d : width, ldv = identity ? p.d_v : width;
    if (w.tile) {
      // Identity: padded keys are excluded by the key mask (the bias is 0 or -inf); jl projects
      // zeroed padded rows and has no bias.
      const std::uint8_t* valid = identity ? valid_for(bh) : nullptr;
      FlashTile& ft = *w.tile;
      ft.begin(q, p.d, n, float(p.effective_scale()));
      ft.add_key_range(kp, ldk, vp, ldv, k_, std::min(k_, kTileKeys), valid);
      ft.finish(out, p.d_v);
      return;
    }
    StridedMap s(w.s.data(), n, k_, approx::Stride(k_));
    s.noalias() =
        ConstMatMap(q, n, p.d) * ConstStridedMap(kp, k_, p.d, approx::Stride(ldk)).transpose();
    s *= float(p.effective_scale());
    s.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias_.data() + bh * k_, k_);
    approx::softmax_rows(s);
    MatMap(out, n, p.d_v).noalias() = s * ConstStridedMap(vp, k_, p.d_v, approx::Stride(ldv));
  }

  // [K' V'] = E [K V] as per-span partial products (parallel over heads and spans), summed in a
  // fixed order. Padded keys and values are zeroed before projecting (mlpen).
  void project_jl(const Tensor4& k, const Tensor4& v, const KeyMask& mask) {
    const Problem& p = problem();
    const Index bh_count = p.batch * p.heads, parts = spans_.parts, width = p.d + p.d_v;
    attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count * parts, 1), [&](const auto& r) {
      LinformerWorkspace& w = workspaces_->local();
      for (Index task = r.begin(); task < r.end(); ++task) {
        const Index bh = task / parts, t = task % parts, b = bh / p.heads, h = bh % p.heads;
        const Index j0 = spans_.begin(t), n = spans_.end(t) - j0;
        const auto valid = mask.row(b);
        StridedMap part(partials_.data() + task * k_ * width, k_, width, approx::Stride(width));
        const ConstStridedMap e(e_[h].data() + j0, k_, n, approx::Stride(p.n_k));
        const float* kr = k.head_data(b, h) + j0 * p.d;
        const float* vr = v.head_data(b, h) + j0 * p.d_v;
        if (valid.empty()) {
          part.leftCols(p.d).noalias() = e * ConstMatMap(kr, n, p.d);
          part.rightCols(p.d_v).noalias() = e * ConstMatMap(vr, n, p.d_v);
        } else {
          auto rows = w.kv_rows.topRows(n);
          for (Index j = 0; j < n; ++j) {
            if (valid[j0 + j]) {
              rows.row(j).head(p.d) = ConstMatMap(kr, n, p.d).row(j);
              rows.row(j).tail(p.d_v) = ConstMatMap(vr, n, p.d_v).row(j);
            } else {
              rows.row(j).setZero();
            }
          }
          part.noalias() = e * rows;
        }
      }
    });
    attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count, 1), [&](const auto& r) {
      for (Index bh = r.begin(); bh < r.end(); ++bh) {
        MatMap dst(kv_proj_.data() + bh * k_ * width, k_, width);
        dst = ConstMatMap(partials_.data() + bh * parts * k_ * width, k_, width);
        for (Index t = 1; t < parts; ++t) {
          dst += ConstMatMap(partials_.data() + (bh * parts + t) * k_ * width, k_, width);
        }
      }
    });
  }

  // Masked segment means of K and V; bias = log(valid keys in the segment), -inf when none.
  void pool(const Tensor4& k, const Tensor4& v, const KeyMask& mask, Index bh) {
    const Problem& p = problem();
    const Index b = bh / p.heads, h = bh % p.heads, width = p.d + p.d_v;
    const auto valid = mask.row(b);
    MatMap dst(kv_proj_.data() + bh * k_ * width, k_, width);
    for (Index r = 0; r < k_; ++r) {
      const Index j0 = approx::segment_begin(r, p.n_k, k_);
      const Index j1 = approx::segment_begin(r + 1, p.n_k, k_);
      const Index count =
          approx::masked_segment_mean(k.head_data(b, h), p.d, j0, j1, valid, dst.row(r).head(p.d));
      approx::masked_segment_mean(v.head_data(b, h), p.d_v, j0, j1, valid, dst.row(r).tail(p.d_v));
      bias_[bh * k_ + r] = count > 0 ? float(std::log(double(count))) : kNegInf;
    }
  }

  Projection projection_;
  Index k_;
  Partition spans_;
  std::vector<RowMatrix> e_;         // per head: E (k, n_k), jl only
  Eigen::VectorXf kv_proj_;          // per (b, h): [K' V'] (k, d + d_v)
  Eigen::VectorXf partials_;         // per (b, h, span): partial [K' V'] (jl)
  std::vector<std::uint8_t> valid_;  // identity with key padding: (b, h, n_k) key flags
  Eigen::VectorXf bias_;             // per (b, h): (k) logit offsets of the projected keys
  std::optional<WorkspacePool<LinformerWorkspace>> workspaces_;  // built in the constructor body
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(linformer) {
  VariantInfo info;
  info.summary = "Linformer: keys and values projected to length k (jl, pool or identity)";
  info.paper = "Wang et al., Linformer: Self-Attention with Linear Complexity, 2020";
  info.traits.family = "approximate";
  info.traits.causal = false;
  info.traits.randomized = true;
  // jl projections do not preserve row sums (V = ones gives E 1, not ones).
  info.traits.rows_sum_to_one = false;
  info.traits.time_complexity = "O(k (n_q + n_k) (d + d_v))";
  info.traits.memory_complexity = "O(k n_k) per head (jl matrix) + O(k (d + d_v))";
  info.params = {
      ParamSpec::integer("k", 256, 1, 1 << 24,
                         "projected length (paper 128 or 256; lucidrains 256); clipped to n_k for "
                         "jl and pool, must equal n_k for identity"),
      ParamSpec::choice("projection", "jl", {"jl", "pool", "identity"},
                        "jl: E with iid N(0, 1/k) entries shared by keys and values; pool: "
                        "segment means (masked); identity: E = I, k = n_k (exact limit)"),
      ParamSpec::integer("seed", 0, 0, 1e15, "seed of the jl projection, drawn per head"),
  };
  info.make = make_factory<Linformer>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const std::string proj = s.get_string("projection");
    const double k = double(std::min<Index>(s.get_int("k"), p.n_k));
    const double bh = double(p.batch * p.heads), width = double(p.d + p.d_v);
    const double nq = double(p.n_q), nk = double(p.n_k);
    // Scores, about 4 flops per softmax entry, and the weighted sum of V'.
    double flops = bh * (2.0 * nq * k * width + 4.0 * nq * k);
    double bytes = bh * k * 4.0;
    if (proj == "pool") {
      bytes += double(threads) * double(query_block_rows(Index(k))) * k * 4.0;
    } else {
      bytes += double(threads) * double(FlashTile::workspace_bytes(
                                     kTileRows, std::min<Index>(Index(k), kTileKeys), p.d, p.d_v));
      if (proj == "identity" && p.key_padding) bytes += bh * k;
    }
    if (proj == "jl") {
      const double parts = double(approx::make_partition(p.n_k, kKeySpan, kMaxSpans).parts);
      flops += bh * 2.0 * k * nk * width;
      bytes += double(p.heads) * k * nk * 4.0 + bh * (parts + 1) * k * width * 4.0;
      if (p.key_padding) bytes += double(threads) * (nk / parts + 1) * width * 4.0;
    } else if (proj == "pool") {
      flops += bh * nk * width;
      bytes += bh * k * width * 4.0;
    }
    return Cost{flops, bytes};
  };
  return info;
}

}  // namespace attnbench
