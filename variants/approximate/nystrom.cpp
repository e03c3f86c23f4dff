// Nystromformer: softmax attention approximated through m landmarks (segment means of Q and K),
// O = F (Z (B V)) with F = softmax(Q K~^T), A = softmax(Q~ K~^T), B = softmax(Q~ K^T) and Z a
// pseudo-inverse of A. Time O(m (n_q + n_k) (d + d_v) + iters m^3), memory O(m (m + d + d_v)) per
// head; no n x n (or n x m) matrix is formed. Xiong et al., "Nystromformer", AAAI 2021.
//
// Products are ordered right to left; B V is an online (tiled) softmax over the keys. The
// iterative pseudo-inverse (Razavi et al. 2014) with 6 iterations is the default and acts as a
// regulariser (A is ill-conditioned; the exact inverse is much worse on real inputs); `svd` is
// the exact pseudo-inverse (double precision) for the exact limits. The learned depthwise
// convolution skip of both reference codes is not part of approximating softmax and is left out.
// Landmark segments are [floor(r n / m), floor((r + 1) n / m)); key landmarks are masked means,
// and a landmark whose segment is all padding is dropped (its logits are -inf).
#include <tbb/blocked_range.h>

#include <Eigen/SVD>
#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "attention/online_softmax.h"
#include "attention/parallel.h"
#include "attention/registry.h"
#include "variants/approximate/approx_common.h"

namespace attnbench {
namespace {

using approx::ConstStridedMap;
using approx::kNegInf;
using approx::Partition;
using approx::StridedMap;

enum class PinvInit { kOriginal, kExactNorm, kLucidrains };

constexpr Index kKeySpan = 2048;  // keys per partial B V (online softmax state)
constexpr Index kMaxSpans = 32;
// B V = softmax(scale Q~ K^T) V (landmark rows over every key) and out = F W = softmax(scale Q
// K~^T + bias) W (every query over the m landmark keys, values W) are both attention: they run
// on the fused tile kernel of `flash` (FlashTile), in flash's default tiles.
constexpr Index kTileRows = 96;
constexpr Index kTileKeys = 96;

// Online softmax state of the m landmark rows over a span of keys.
struct RowState {
  Eigen::VectorXf max, sum;  // (m)
  RowMatrix acc;             // (m, d_v)
};

struct NystromWorkspace {
  RowMatrix x, t1, t2;              // (m, m) pseudo-inverse iteration
  std::unique_ptr<FlashTile> tile;  // (kTileRows, kTileKeys): B V and F W
};

class Nystrom final : public Attention {
 public:
  Nystrom(const Problem& p, const ParamSet& params)
      : Attention("nystrom", p, params),
        m_(std::min({Index(params.get_int("landmarks")), p.n_q, p.n_k})),
        svd_(params.get_string("pinv") == "svd"),
        iters_(params.get_int("pinv_iters")),
        spans_(approx::make_partition(p.n_k, kKeySpan, kMaxSpans)) {
    if (p.causal) {
      throw std::invalid_argument(
          "nystrom: causal = true is not supported: landmarks average over the whole sequence (" +
          p.to_string() + ")");
    }
    params_.set("landmarks", m_);  // clipped to min(n_q, n_k); reported
    const std::string init = params.get_string("pinv_init");
    init_ = init == "exact_norm"   ? PinvInit::kExactNorm
            : init == "lucidrains" ? PinvInit::kLucidrains
                                   : PinvInit::kOriginal;
    const Index bh = p.batch * p.heads, m = m_;
    q_land_.setZero(bh * m * p.d);
    k_land_.setZero(bh * m * p.d);
    bias_.setZero(bh * m);
    land_valid_.assign(bh * m, 1);
    a_.setZero(bh * m * m);
    z_.setZero(bh * m * m);
    w_.setZero(bh * m * p.d_v);
    init_scale_.assign(bh, 1.0);
    partials_.resize(bh * spans_.parts);
    for (auto& s : partials_) {
      s.max.setZero(m);
      s.sum.setZero(m);
      s.acc.setZero(m, p.d_v);
    }
    workspaces_.emplace([&] {
      NystromWorkspace w;
      w.tile = std::make_unique<FlashTile>(kTileRows, kTileKeys, p.d, p.d_v);
      if (!svd_) {
        w.x.resize(m, m);
        w.t1.resize(m, m);
        w.t2.resize(m, m);
      }
      return w;
    });
  }

  // The pseudo-inverse residual |A Z A - A|_F / |A|_F per head (max and mean), computed here in
  // double from the A and Z of the last forward, so it costs the timed forward nothing.
  Json diagnostics() const override {
    const Index bh = problem().batch * problem().heads;
    double worst = 0, total = 0;
    for (Index i = 0; i < bh; ++i) {
      const RowMatrixD a = ConstMatMap(a_.data() + i * m_ * m_, m_, m_).cast<double>();
      const RowMatrixD z = ConstMatMap(z_.data() + i * m_ * m_, m_, m_).cast<double>();
      const double norm = a.norm();
      const double r = norm > 0 ? (a * z * a - a).norm() / norm : 0.0;
      worst = std::max(worst, r);
      total += r;
    }
    return {{"pinv_residual_max", worst},
            {"pinv_residual_mean", total / double(bh)},
            {"landmarks", m_}};
  }

 protected:
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    const Problem& p = problem();
    const Index bh_count = p.batch * p.heads, parts = spans_.parts;
    attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count, 1), [&](const auto& r) {
      NystromWorkspace& w = workspaces_->local();
      for (Index bh = r.begin(); bh < r.end(); ++bh) landmarks(q, k, mask, bh, w);
    });
    attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count * parts, 1), [&](const auto& r) {
      NystromWorkspace& w = workspaces_->local();
      for (Index task = r.begin(); task < r.end(); ++task) key_span(k, v, mask, task, w);
    });
    set_init_scales();
    attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count, 1), [&](const auto& r) {
      NystromWorkspace& w = workspaces_->local();
      for (Index bh = r.begin(); bh < r.end(); ++bh) middle(bh, w);
    });
    const Index q_blocks = (p.n_q + kTileRows - 1) / kTileRows;
    attnbench::parallel_for(
        tbb::blocked_range<Index>(0, bh_count * q_blocks, 1), [&](const auto& r) {
          NystromWorkspace& w = workspaces_->local();
          for (Index task = r.begin(); task < r.end(); ++task) {
            const Index bh = task / q_blocks, b = bh / p.heads, h = bh % p.heads;
            const Index i0 = (task % q_blocks) * kTileRows, rows = std::min(kTileRows, p.n_q - i0);
            // out = softmax(scale Q K~^T + bias) W: landmarks whose segment is all padding (bias
            // -inf) are excluded through the key mask.
            FlashTile& ft = *w.tile;
            ft.begin(q.head_data(b, h) + i0 * p.d, p.d, rows, float(p.effective_scale()));
            const float* kl = k_land_.data() + bh * m_ * p.d;
            const float* wl = w_.data() + bh * m_ * p.d_v;
            ft.add_key_range(kl, p.d, wl, p.d_v, m_, kTileKeys, land_valid_.data() + bh * m_);
            ft.finish(out.head_data(b, h) + i0 * p.d_v, p.d_v);
          }
        });
  }

 private:
  // s (rows, cols) = scale x y^T with x (rows, d), y (cols, d).
  void scores(const float* x, Index rows, const float* y, Index cols, StridedMap s) const {
    const Index d = problem().d;
    s.noalias() = ConstMatMap(x, rows, d) * ConstMatMap(y, cols, d).transpose();
    s *= float(problem().effective_scale());
  }

  // Q~, K~ (segment means; K~ masked, all-padding segments dropped) and A = softmax(Q~ K~^T).
  void landmarks(const Tensor4& q, const Tensor4& k, const KeyMask& mask, Index bh,
                 NystromWorkspace& w) {
    const Problem& p = problem();
    const Index b = bh / p.heads, h = bh % p.heads, d = p.d;
    MatMap ql(q_land_.data() + bh * m_ * d, m_, d), kl(k_land_.data() + bh * m_ * d, m_, d);
    Eigen::Map<Eigen::RowVectorXf> bias(bias_.data() + bh * m_, m_);
    for (Index r = 0; r < m_; ++r) {
      approx::masked_segment_mean(q.head_data(b, h), d, approx::segment_begin(r, p.n_q, m_),
                                  approx::segment_begin(r + 1, p.n_q, m_), {}, ql.row(r));
      const Index count = approx::masked_segment_mean(
          k.head_data(b, h), d, approx::segment_begin(r, p.n_k, m_),
          approx::segment_begin(r + 1, p.n_k, m_), mask.row(b), kl.row(r));
      bias(r) = count > 0 ? 0.0f : kNegInf;
      land_valid_[bh * m_ + r] = count > 0;
    }
    StridedMap a(a_.data() + bh * m_ * m_, m_, m_, approx::Stride(m_));
    scores(ql.data(), m_, kl.data(), m_, a);
    a.rowwise() += bias;
    approx::softmax_rows(a);
  }

  // Softmax of the landmark rows Q~ over the keys of one span, on the fused tile kernel: the
  // span's normalised B V rows and their log-sum-exp, kept as the online-softmax state
  // (max, sum, acc) = (lse, 1, out) (or (-inf, 0, 0) when every key of the span is padded).
  void key_span(const Tensor4& k, const Tensor4& v, const KeyMask& mask, Index task,
                NystromWorkspace& w) {
    const Problem& p = problem();
    const Index parts = spans_.parts, bh = task / parts, t = task % parts;
    const Index b = bh / p.heads, h = bh % p.heads, d = p.d, dv = p.d_v;
    const auto valid = mask.row(b);
    RowState& st = partials_[task];
    FlashTile& ft = *w.tile;
    const float* ql = q_land_.data() + bh * m_ * d;
    const float* kh = k.head_data(b, h);
    const float* vh = v.head_data(b, h);
    for (Index r0 = 0; r0 < m_; r0 += kTileRows) {
      const Index br = std::min(kTileRows, m_ - r0);
      ft.begin(ql + r0 * d, d, br, float(p.effective_scale()));
      const Index j0 = spans_.begin(t);
      ft.add_key_range(kh + j0 * d, d, vh + j0 * dv, dv, spans_.end(t) - j0, kTileKeys,
                       valid.empty() ? nullptr : valid.data() + j0);
      ft.finish(st.acc.data() + r0 * dv, dv, st.max.data() + r0);
    }
    for (Index r = 0; r < m_; ++r) st.sum(r) = st.max(r) == kNegInf ? 0.0f : 1.0f;
  }

  // Initial scale of Z_0 = A^T / scale: `original` (mlpen) divides by the largest column sum
  // over every batch entry and head; `exact_norm` by the head's own |A|_1 |A|_inf; `lucidrains`
  // by the largest row sum times the largest column sum, both over everything.
  void set_init_scales() {
    const Index bh_count = problem().batch * problem().heads;
    double global_col = 0, global_row = 0;
    for (Index bh = 0; bh < bh_count; ++bh) {
      const ConstMatMap a(a_.data() + bh * m_ * m_, m_, m_);
      const double col = a.cwiseAbs().colwise().sum().maxCoeff();
      const double row = a.cwiseAbs().rowwise().sum().maxCoeff();
      init_scale_[bh] = col * row;
      global_col = std::max(global_col, col);
      global_row = std::max(global_row, row);
    }
    for (Index bh = 0; bh < bh_count; ++bh) {
      if (init_ == PinvInit::kOriginal) init_scale_[bh] = global_col;
      if (init_ == PinvInit::kLucidrains) init_scale_[bh] = global_col * global_row;
    }
  }

  // Merge the span states into B V, invert A, W = Z (B V).
  void middle(Index bh, NystromWorkspace& w) {
    const Problem& p = problem();
    const Index parts = spans_.parts, m = m_;
    // B V in place in the first span's state, merging the others in a fixed order.
    RowState& total = partials_[bh * parts];
    for (Index t = 1; t < parts; ++t) {
      const RowState& s = partials_[bh * parts + t];
      for (Index r = 0; r < m; ++r) {
        const float mx = std::max(total.max(r), s.max(r));
        if (mx == kNegInf) continue;
        const float a = std::exp(total.max(r) - mx), c = std::exp(s.max(r) - mx);
        total.sum(r) = a * total.sum(r) + c * s.sum(r);
        total.acc.row(r) = a * total.acc.row(r) + c * s.acc.row(r);
        total.max(r) = mx;
      }
    }
    for (Index r = 0; r < m; ++r) {
      if (total.sum(r) > 0.0f) {
        total.acc.row(r) /= total.sum(r);
      } else {
        total.acc.row(r).setZero();  // every key padded
      }
    }
    const ConstMatMap a(a_.data() + bh * m * m, m, m);
    MatMap z(z_.data() + bh * m * m, m, m);
    MatMap wm(w_.data() + bh * m * p.d_v, m, p.d_v);
    if (svd_) {
      // Exact Moore-Penrose inverse in double, singular values below m eps sigma_max dropped.
      Eigen::BDCSVD<Eigen::MatrixXd> svd(a.cast<double>(),
                                         Eigen::ComputeThinU | Eigen::ComputeThinV);
      const auto& sv = svd.singularValues();
      const double cutoff =
          sv.size() > 0 ? double(m) * std::numeric_limits<double>::epsilon() * sv(0) : 0.0;
      Eigen::VectorXd inv(sv.size());
      for (Index i = 0; i < sv.size(); ++i) inv(i) = sv(i) > cutoff ? 1.0 / sv(i) : 0.0;
      const Eigen::MatrixXd zd = svd.matrixV() * inv.asDiagonal() * svd.matrixU().transpose();
      z = zd.cast<float>();
      wm = (zd * total.acc.cast<double>()).cast<float>();
      return;
    }
    // Z_{t+1} = 1/4 Z (13 I - A Z (15 I - A Z (7 I - A Z))), Z_0 = A^T / init scale.
    const float s = init_scale_[bh] > 0 ? float(1.0 / init_scale_[bh]) : 0.0f;
    z = s * a.transpose();
    for (Index it = 0; it < iters_; ++it) {
      w.x.noalias() = a * z;
      w.t1 = -w.x;
      w.t1.diagonal().array() += 7.0f;
      w.t2.noalias() = -w.x * w.t1;
      w.t2.diagonal().array() += 15.0f;
      w.t1.noalias() = -w.x * w.t2;
      w.t1.diagonal().array() += 13.0f;
      w.t2.noalias() = 0.25f * z * w.t1;
      z = w.t2;
    }
    wm.noalias() = z * total.acc;
  }

  Index m_;
  bool svd_;
  Index iters_;
  PinvInit init_ = PinvInit::kOriginal;
  Partition spans_;
  Eigen::VectorXf q_land_, k_land_;       // per (b, h): Q~, K~ (m, d)
  Eigen::VectorXf bias_;                  // per (b, h): 0, or -inf for a dropped key landmark
  std::vector<std::uint8_t> land_valid_;  // per (b, h): 1, or 0 for a dropped key landmark
  Eigen::VectorXf a_, z_;                 // per (b, h): A and Z (m, m)
  Eigen::VectorXf w_;                     // per (b, h): W = Z B V (m, d_v)
  std::vector<double> init_scale_;
  std::vector<RowState> partials_;                             // per (b, h, span)
  std::optional<WorkspacePool<NystromWorkspace>> workspaces_;  // built in the constructor body
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(nystrom) {
  VariantInfo info;
  info.summary = "Nystromformer: landmark (segment-mean) Nystrom approximation of softmax";
  info.paper = "Xiong et al., Nystromformer, AAAI 2021";
  info.traits.family = "approximate";
  info.traits.causal = false;
  info.traits.rows_sum_to_one = false;  // F Z B has rows summing to about 1, entries of any sign
  info.traits.time_complexity = "O(m (n_q + n_k) (d + d_v) + iters m^3)";
  info.traits.memory_complexity = "O(m (m + d + d_v)) per head";
  info.params = {
      ParamSpec::integer("landmarks", 64, 1, 1 << 16,
                         "m, landmarks = contiguous segments (LRA configs 32-256, lucidrains 256); "
                         "clipped to min(n_q, n_k)"),
      ParamSpec::choice("pinv", "iterative", {"iterative", "svd"},
                        "pseudo-inverse of A: the paper's iteration (a regulariser), or an exact "
                        "SVD in double (for exact limits)"),
      ParamSpec::integer("pinv_iters", 6, 0, 1000, "iterations of the iterative pseudo-inverse"),
      ParamSpec::choice("pinv_init", "original", {"original", "exact_norm", "lucidrains"},
                        "Z_0 = A^T / c with c: original = largest column sum over all heads "
                        "(mlpen); exact_norm = the head's |A|_1 |A|_inf; lucidrains = largest "
                        "row sum x largest column sum over all heads"),
  };
  info.make = make_factory<Nystrom>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const double m = double(std::min({Index(s.get_int("landmarks")), p.n_q, p.n_k}));
    const double bh = double(p.batch * p.heads), d = double(p.d), dv = double(p.d_v);
    const double nq = double(p.n_q), nk = double(p.n_k);
    const bool svd = s.get_string("pinv") == "svd";
    const double pinv = svd ? 30.0 * m * m * m : 8.0 * m * m * m * double(s.get_int("pinv_iters"));
    // Landmark means, A, B V (scores, ~4 flops per softmax entry, values), the pseudo-inverse,
    // W = Z (B V), F and F W.
    const double flops =
        bh * ((nq + nk) * d + 2.0 * m * m * d + 4.0 * m * m + 2.0 * m * nk * (d + dv) +
              4.0 * m * nk + pinv + 2.0 * m * m * dv + 2.0 * nq * m * (d + dv) + 4.0 * nq * m);
    const double parts = double(approx::make_partition(p.n_k, kKeySpan, kMaxSpans).parts);
    double bytes =
        bh * 4.0 * (2.0 * m * d + m + 2.0 * m * m + m * dv) + bh * parts * 4.0 * m * (dv + 2) +
        bh * m + double(threads) * 4.0 * (svd ? 0.0 : 3.0 * m * m) +
        double(threads) * double(FlashTile::workspace_bytes(kTileRows, kTileKeys, p.d, p.d_v));
    if (svd) bytes += double(threads) * 8.0 * 6.0 * m * m;  // the SVD's factors in double
    return Cost{flops, bytes};
  };
  return info;
}

}  // namespace attnbench
