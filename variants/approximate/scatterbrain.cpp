// Scatterbrain: sparse plus low-rank attention. Exact softmax weights on a local window, FAVOR+
// (Performer) random-feature weights on every other key, combined in the log domain.
// Time O(n ((w + b) (d + d_v + m) + m (d + d_v))) for a query block of b rows, memory O(m d_v)
// per head plus fixed scratch. Chen et al., "Scatterbrain: Unifying Sparse and Low-rank
// Attention Approximation", NeurIPS 2021.
//
//   o_i = [sum_{j in S_i} (e^{s_ij} - phi_i.phi_j) v_j + phi_i^T sum_j phi_j v_j^T]
//         / [sum_{j in S_i} (e^{s_ij} - phi_i.phi_j) + phi_i^T sum_j phi_j]
// Window S_i (fast-transformers' local product, as in fly's sblocal): keys
// [c_i - floor(w/2), c_i - floor(w/2) + w) with c_i = i + n_k - n_q (bottom-right alignment).
// Each row is scaled by its own reference exponent (max of its window logits and of its
// low-rank log-scale), so neither part overflows; the low-rank part of the denominator is
// clamped at 0 (fly clamps it at 1e-24 in the log domain). When every window covers every key
// the low-rank part is skipped and the output is exact. Positive orthogonal features, epsilon 0.
#include <tbb/blocked_range.h>

#include <cstring>
#include <optional>
#include <vector>

#include "attention/parallel.h"
#include "attention/registry.h"
#include "variants/approximate/approx_common.h"
#include "variants/approximate/feature_maps.h"

namespace attnbench {
namespace {

using approx::ConstStridedMap;
using approx::kNegInf;
using approx::Partition;
using approx::StridedMap;

constexpr Index kKeySpan = 1024;  // keys per partial low-rank sum
constexpr Index kMaxSpans = 64;
constexpr Index kBlock = 64;  // key rows per feature block of the low-rank sums
// Query rows per block: the window union of a block is kQueryBlock + w - 1 keys, so smaller
// blocks waste fewer window entries; the key features of the union are cached and slide with
// the blocks of one task (kBlocksPerTask consecutive blocks of one head), so each key's features
// are computed about once.
constexpr Index kQueryBlock = 32;
constexpr Index kBlocksPerTask = 16;
constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

struct SpanSums {
  RowMatrixD kv;         // (m, d_v): sum_j exp(u_j - ref) v_j^T
  Eigen::RowVectorXd z;  // (m)
  double ref = kMinusInf;
};

struct ScatterWorkspace {
  RowMatrix uq;                    // (query block, m) query features
  RowMatrix uk;                    // (block, m) key features (low-rank sums)
  RowMatrix ukw;                   // (union + query block, m) key features of the window union
  Index feat_lo = 0, feat_hi = 0;  // keys whose features ukw holds (top rows), this task
  RowMatrix s, l;                  // (query block, union) window logits, low-rank window weights
  RowMatrix kv_tmp;                // (m, d_v)
  Eigen::RowVectorXf z_tmp;        // (m)
  Eigen::VectorXf qmax, lr_den;    // (block)
};

class Scatterbrain final : public Attention {
 public:
  Scatterbrain(const Problem& p, const ParamSet& params)
      : Attention("scatterbrain", p, params),
        w_(params.get_int("width")),
        m_(params.get_int("features")),
        spans_(approx::make_partition(p.n_k, kKeySpan, kMaxSpans)) {
    // Every window covers every key: window starts and ends grow with the row, so the last
    // row's must start at or before key 0 and the first row's end at or after n_k.
    const Index half = w_ / 2, off = p.n_k - p.n_q;
    full_support_ = (p.n_q - 1 + off) - half <= 0 && off - half + w_ >= p.n_k;
    const auto seed = std::uint64_t(params.get_int("seed"));
    const float sqrt_scale = float(std::sqrt(p.effective_scale()));
    for (Index h = 0; h < p.heads; ++h) {
      dirs_.push_back(sqrt_scale * favor_projection_for_head(seed, h, m_, FavorKind::kPositive, p.d,
                                                             /*orthogonal=*/true));
    }
    const Index bh = p.batch * p.heads;
    partials_.resize(bh * spans_.parts);
    for (auto& s : partials_) {
      s.kv.setZero(m_, p.d_v);
      s.z.setZero(m_);
    }
    kv_.setZero(bh * m_ * p.d_v);
    z_.setZero(bh * m_);
    ref_.assign(bh, kMinusInf);
    const Index union_rows = std::min(p.n_k, kQueryBlock + w_);
    workspaces_.emplace([&] {
      ScatterWorkspace w;
      w.uq.resize(kQueryBlock, m_);
      w.uk.resize(kBlock, m_);
      w.ukw.resize(union_rows + kQueryBlock, m_);
      w.s.resize(kQueryBlock, union_rows);
      w.l.resize(kQueryBlock, union_rows);
      w.kv_tmp.resize(m_, p.d_v);
      w.z_tmp.resize(m_);
      w.qmax.resize(kQueryBlock);
      w.lr_den.resize(kQueryBlock);
      return w;
    });
  }

 protected:
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    const Problem& p = problem();
    const Index bh_count = p.batch * p.heads, parts = spans_.parts;
    if (!full_support_) {
      attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count * parts, 1),
                              [&](const auto& r) {
                                ScatterWorkspace& w = workspaces_->local();
                                for (Index task = r.begin(); task < r.end(); ++task)
                                  key_span(k, v, mask, task, w);
                              });
      attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count, 1), [&](const auto& r) {
        for (Index bh = r.begin(); bh < r.end(); ++bh) merge(bh);
      });
    }
    const Index q_blocks = (p.n_q + kQueryBlock - 1) / kQueryBlock;
    const Index q_tasks = (q_blocks + kBlocksPerTask - 1) / kBlocksPerTask;
    attnbench::parallel_for(
        tbb::blocked_range<Index>(0, bh_count * q_tasks, 1), [&](const auto& r) {
          ScatterWorkspace& w = workspaces_->local();
          for (Index task = r.begin(); task < r.end(); ++task) {
            const Index bh = task / q_tasks, t0 = (task % q_tasks) * kBlocksPerTask;
            w.feat_lo = w.feat_hi = 0;  // the feature cache holds nothing of this task yet
            for (Index t = t0; t < std::min(t0 + kBlocksPerTask, q_blocks); ++t) {
              query_block(q, k, v, mask, bh, t * kQueryBlock, out, w);
            }
          }
        });
  }

 private:
  // Key features of rows [j0, j0 + n) into w.uk: exp(u - ref), padded keys 0, with ref chosen
  // by `choose` from the block's largest exponent.
  template <typename ChooseRef>
  void key_features(const float* k, std::span<const std::uint8_t> valid, Index h, Index j0, Index n,
                    ScatterWorkspace& w, ChooseRef&& choose) const {
    auto u = w.uk.topRows(n);
    favor_exponents(ConstMatMap(k + j0 * problem().d, n, problem().d), dirs_[h],
                    problem().effective_scale(), FavorKind::kPositive, u, nullptr);
    float mx = kNegInf;
    for (Index j = 0; j < n; ++j) {
      if (!valid.empty() && !valid[j0 + j]) {
        u.row(j).setConstant(kNegInf);
      } else {
        mx = std::max(mx, u.row(j).maxCoeff());
      }
    }
    const double ref = choose(double(mx));
    if (ref == kMinusInf) {
      u.setZero();
    } else {
      u.array() = (u.array() - float(ref)).exp();
    }
  }

  void key_span(const Tensor4& k, const Tensor4& v, const KeyMask& mask, Index task,
                ScatterWorkspace& w) {
    const Problem& p = problem();
    const Index parts = spans_.parts, bh = task / parts, t = task % parts;
    const Index b = bh / p.heads, h = bh % p.heads;
    SpanSums& s = partials_[task];
    s.kv.setZero();
    s.z.setZero();
    s.ref = kMinusInf;
    for (Index j0 = spans_.begin(t); j0 < spans_.end(t); j0 += kBlock) {
      const Index n = std::min(kBlock, spans_.end(t) - j0);
      key_features(k.head_data(b, h), mask.row(b), h, j0, n, w, [&](double mx) {
        const double new_ref = std::max(s.ref, mx);
        if (new_ref != s.ref && s.ref != kMinusInf) {
          const double f = std::exp(s.ref - new_ref);
          s.kv *= f;
          s.z *= f;
        }
        s.ref = new_ref;
        return new_ref;
      });
      auto bk = w.uk.topRows(n);
      w.kv_tmp.noalias() = bk.transpose() * ConstMatMap(v.head_data(b, h) + j0 * p.d_v, n, p.d_v);
      s.kv += w.kv_tmp.cast<double>();
      w.z_tmp = bk.row(0);
      for (Index j = 1; j < n; ++j) w.z_tmp += bk.row(j);
      s.z += w.z_tmp.cast<double>();
    }
  }

  void merge(Index bh) {
    const Index parts = spans_.parts, dv = problem().d_v;
    double ref = kMinusInf;
    for (Index t = 0; t < parts; ++t) ref = std::max(ref, partials_[bh * parts + t].ref);
    ref_[bh] = ref;
    MatMap kv(kv_.data() + bh * m_ * dv, m_, dv);
    Eigen::Map<Eigen::RowVectorXf> z(z_.data() + bh * m_, m_);
    kv.setZero();
    z.setZero();
    if (ref == kMinusInf) return;
    // Sum in double, in span order, then round once.
    RowMatrixD& acc = partials_[bh * parts].kv;
    Eigen::RowVectorXd& zacc = partials_[bh * parts].z;
    const double f0 = std::exp(partials_[bh * parts].ref - ref);
    acc *= f0;
    zacc *= f0;
    for (Index t = 1; t < parts; ++t) {
      const SpanSums& s = partials_[bh * parts + t];
      if (s.ref == kMinusInf) continue;
      const double f = std::exp(s.ref - ref);
      acc += f * s.kv;
      zacc += f * s.z;
    }
    kv = acc.cast<float>();
    z = zacc.cast<float>();
  }

  // Features exp(u - key_ref) of keys [lo, hi) into the top rows of w.ukw (padded keys 0). The
  // previous block's union of the same task overlaps this one: its rows are moved up and only
  // the new keys are computed. key_ref is fixed per head, so cached rows stay valid.
  void window_features(const float* k, std::span<const std::uint8_t> valid, Index h, Index lo,
                       Index hi, double key_ref, ScatterWorkspace& w) const {
    const Problem& p = problem();
    Index from = lo;
    if (w.feat_hi > w.feat_lo && lo >= w.feat_lo && lo < w.feat_hi && hi >= w.feat_hi) {
      const Index keep = w.feat_hi - lo;
      if (lo > w.feat_lo) {
        float* base = w.ukw.data();
        std::memmove(base, base + (lo - w.feat_lo) * m_, sizeof(float) * keep * m_);
      }
      from = w.feat_hi;
    }
    if (hi > from) {
      auto u = w.ukw.middleRows(from - lo, hi - from);
      favor_exponents(ConstMatMap(k + from * p.d, hi - from, p.d), dirs_[h], p.effective_scale(),
                      FavorKind::kPositive, u, nullptr);
      u.array() = (u.array() - float(key_ref)).exp();
      if (!valid.empty()) {
        for (Index j = from; j < hi; ++j) {
          if (!valid[j]) u.row(j - from).setZero();
        }
      }
    }
    w.feat_lo = lo;
    w.feat_hi = hi;
  }

  void query_block(const Tensor4& q, const Tensor4& k, const Tensor4& v, const KeyMask& mask,
                   Index bh, Index i0, Tensor4& out, ScatterWorkspace& w) const {
    const Problem& p = problem();
    const Index b = bh / p.heads, h = bh % p.heads, d = p.d, dv = p.d_v;
    const Index rows = std::min(kQueryBlock, p.n_q - i0), half = w_ / 2, off = p.n_k - p.n_q;
    const auto valid = mask.row(b);
    // Union of the rows' windows.
    const Index lo = std::clamp<Index>(i0 + off - half, 0, p.n_k);
    const Index hi = std::clamp<Index>(i0 + rows - 1 + off - half + w_, 0, p.n_k);
    const Index nu = hi - lo;
    MatMap o(out.head_data(b, h) + i0 * dv, rows, dv);
    const ConstMatMap vu(v.head_data(b, h) + lo * dv, nu, dv);
    StridedMap s(w.s.data(), rows, nu, approx::Stride(w.s.cols()));
    s.noalias() = ConstMatMap(q.head_data(b, h) + i0 * d, rows, d) *
                  ConstMatMap(k.head_data(b, h) + lo * d, nu, d).transpose();
    s *= float(p.effective_scale());
    for (Index i = 0; i < rows; ++i) {
      const Index a = std::clamp<Index>(i0 + i + off - half - lo, 0, nu);
      const Index e = std::clamp<Index>(i0 + i + off - half + w_ - lo, 0, nu);
      s.row(i).head(a).setConstant(kNegInf);
      s.row(i).tail(nu - e).setConstant(kNegInf);
      if (!valid.empty()) {
        for (Index j = a; j < e; ++j) {
          if (!valid[lo + j]) s(i, j) = kNegInf;
        }
      }
    }
    const double key_ref = full_support_ ? kMinusInf : ref_[bh];
    if (key_ref == kMinusInf) {
      // Exact on the window, nothing (or no valid key) outside it.
      approx::softmax_rows(s);
      o.noalias() = s * vu;
      return;
    }
    // Query features relative to the row maximum; the low-rank weight of (i, j) is
    // phi_i.phi_j = exp(qmax_i + key_ref - log m) a_i.b_j, on the scale of the exact e^{s_ij}.
    auto a = w.uq.topRows(rows);
    favor_exponents(ConstMatMap(q.head_data(b, h) + i0 * d, rows, d), dirs_[h], p.effective_scale(),
                    FavorKind::kPositive, a, nullptr);
    for (Index i = 0; i < rows; ++i) {
      w.qmax(i) = a.row(i).maxCoeff();
      a.row(i).array() = (a.row(i).array() - w.qmax(i)).exp();
    }
    window_features(k.head_data(b, h), valid, h, lo, hi, key_ref, w);
    StridedMap l(w.l.data(), rows, nu, approx::Stride(w.l.cols()));
    l.noalias() = a * w.ukw.topRows(nu).transpose();
    const ConstMatMap kv(kv_.data() + bh * m_ * dv, m_, dv);
    auto lr_den = w.lr_den.head(rows);
    const double log_m = std::log(double(m_));
    lr_den.noalias() = a * Eigen::Map<const Eigen::VectorXf>(z_.data() + bh * m_, m_);
    for (Index i = 0; i < rows; ++i) {
      // Row reference: the larger of the window's max logit and the low-rank log-scale bound.
      const double alpha = double(w.qmax(i)) + key_ref - log_m;
      const double lr_total = double(lr_den(i));
      const double lr_log = lr_total > 0 ? alpha + std::log(lr_total) : kMinusInf;
      // The window may hold no key at all (n_q != n_k: rows whose window falls outside the keys).
      const double window_max = nu > 0 ? double(s.row(i).maxCoeff()) : kMinusInf;
      const double ref = std::max(window_max, lr_log);
      if (ref == kMinusInf) {  // no valid key anywhere
        s.row(i).setZero();
        a.row(i).setZero();
        lr_den(i) = 0.0f;
        continue;
      }
      const float lr_scale = float(std::exp(alpha - ref));
      // On the window [wa, we): exact weight minus the low-rank weight. Padded keys have
      // s = -inf and zero features (l = 0), so both terms vanish for them; outside the window
      // the weight is exactly 0. Plain array expressions, so the exp is vectorised.
      const Index wa = std::clamp<Index>(i0 + i + off - half - lo, 0, nu);
      const Index we = std::max(wa, std::clamp<Index>(i0 + i + off - half + w_ - lo, 0, nu));
      auto srow = s.row(i).array();
      srow = (srow - float(ref)).exp();
      srow.head(wa).setZero();
      srow.tail(nu - we).setZero();
      const auto lwin = l.row(i).segment(wa, we - wa).array();
      const float window_lr = lwin.sum();
      srow.segment(wa, we - wa) -= lr_scale * lwin;
      // Low-rank mass outside the window: total minus the window's share, clamped at 0 against
      // cancellation.
      lr_den(i) = std::max(0.0f, lr_scale * (lr_den(i) - window_lr)) + lr_scale * window_lr;
      a.row(i) *= lr_scale;
    }
    o.noalias() = s * vu;
    o.noalias() += a * kv;
    for (Index i = 0; i < rows; ++i) {
      const float den = s.row(i).sum() + lr_den(i);
      if (den > 0.0f) {
        o.row(i) /= den;
      } else {
        o.row(i).setZero();
      }
    }
  }

  Index w_, m_;
  bool full_support_ = false;
  Partition spans_;
  std::vector<RowMatrix> dirs_;  // per head: scale^1/2 W (m, d)
  std::vector<SpanSums> partials_;
  Eigen::VectorXf kv_, z_;   // per (b, h): sum_j b_j v_j^T (m, d_v), sum_j b_j (m)
  std::vector<double> ref_;  // per (b, h): key reference exponent (-inf: no valid key)
  std::optional<WorkspacePool<ScatterWorkspace>> workspaces_;  // built in the constructor body
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(scatterbrain) {
  VariantInfo info;
  info.summary = "Scatterbrain: exact local window plus Performer features elsewhere (log domain)";
  info.paper = "Chen et al., Scatterbrain: Unifying Sparse and Low-rank Attention, NeurIPS 2021";
  info.traits.family = "approximate";
  info.traits.causal = false;
  info.traits.randomized = true;
  info.traits.time_complexity = "O(n ((w + b) (d + d_v + m) + m (d + d_v)))";
  info.traits.memory_complexity = "O(m d_v) per head";
  info.params = {
      ParamSpec::integer("width", 128, 1, 1 << 24,
                         "w, keys in the exact local window [i - w/2, i - w/2 + w) (centred)"),
      ParamSpec::integer("features", 64, 1, 1 << 16,
                         "m, positive orthogonal random features for the keys outside the window"),
      ParamSpec::integer("seed", 0, 0, 1e15, "seed of the random features, drawn per head"),
  };
  info.make = make_factory<Scatterbrain>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const double w = double(s.get_int("width")), m = double(s.get_int("features"));
    const double bh = double(p.batch * p.heads), d = double(p.d), dv = double(p.d_v);
    const double nq = double(p.n_q), nk = double(p.n_k);
    const double u = std::min(nk, double(kQueryBlock) + w);  // window union per query block
    // Key sums (features + KV), per query row: features, window logits, window key features
    // (each key about once per task: one block's worth per row, plus the first union of each
    // task), low-rank window weights, weighted sum of V, phi_q KV.
    const double feats_per_row = 1.0 + u / double(kQueryBlock * kBlocksPerTask);
    const double flops = bh * (nk * (2.0 * d * m + 4.0 * m + 2.0 * m * (dv + 1)) +
                               nq * (2.0 * d * m + 4.0 * m + 2.0 * u * d + 4.0 * u +
                                     feats_per_row * (2.0 * d * m + 4.0 * m) + 2.0 * u * m +
                                     2.0 * u * dv + 2.0 * m * (dv + 1)));
    const double parts = double(approx::make_partition(p.n_k, kKeySpan, kMaxSpans).parts);
    const double bytes =
        double(p.heads) * m * d * 4.0 + bh * parts * 8.0 * m * (dv + 1) + bh * 4.0 * m * (dv + 1) +
        double(threads) * 4.0 *
            (double(kQueryBlock) * m + double(kBlock) * m + (u + double(kQueryBlock)) * m +
             2.0 * double(kQueryBlock) * u + m * dv + m + 2.0 * double(kQueryBlock));
    return Cost{flops, bytes};
  };
  return info;
}

}  // namespace attnbench
