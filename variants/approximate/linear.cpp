// Linear attention: softmax replaced by the kernel phi(q)^T phi(k) with phi = elu + 1, computed
// in its associative form. Time O(n d d_v), memory O(d d_v) per head (plus fixed scratch).
// Katharopoulos et al., "Transformers are RNNs", ICML 2020.
//
// This is a different kernel, not an estimator of softmax attention: no setting makes it exact
// and its error against softmax does not shrink. It is measured against softmax only as a
// reference point. Like fast-transformers, phi is applied to the raw q and k (the problem's
// logit scale does not enter a non-softmax kernel).
#include <tbb/blocked_range.h>

#include <vector>

#include "attention/parallel.h"
#include "attention/registry.h"
#include "variants/approximate/approx_common.h"
#include "variants/approximate/feature_maps.h"

namespace attnbench {
namespace {

using approx::ConstStridedMap;
using approx::Partition;
using approx::StridedMap;

constexpr Index kKeySpan = 1024;    // keys per partial sum (non-causal)
constexpr Index kMaxSpans = 64;     // partial sums per head (bounded memory)
constexpr Index kBlock = 256;       // rows per feature block (fits L2 with d <= 128)
constexpr Index kCausalChunk = 64;  // quadratic block of the chunked causal form

struct LinearWorkspace {
  RowMatrix phi_q, phi_k, p;  // (block, d), (block, d), (chunk, chunk)
  RowMatrix kv_tmp;           // (d, d_v)
  Eigen::VectorXf den;        // (block)
  RowMatrixD state;           // (d, d_v) causal prefix sum (or reduction) in double
  Eigen::VectorXd z;          // (d)
  RowMatrix state_f;          // (d, d_v) float copy for the GEMM
  Eigen::VectorXf z_f;        // (d)
};

class LinearAttention final : public Attention {
 public:
  LinearAttention(const Problem& p, const ParamSet& params)
      : Attention("linear", p, params),
        epsilon_(params.get_double("epsilon")),
        spans_(approx::make_partition(p.n_k, kKeySpan, kMaxSpans)),
        workspaces_([&] {
          LinearWorkspace w;
          const Index block = std::max(kBlock, kCausalChunk);
          w.phi_q.resize(block, p.d);
          w.phi_k.resize(block, p.d);
          w.p.resize(kCausalChunk, kCausalChunk);
          w.kv_tmp.resize(p.d, p.d_v);
          w.den.resize(block);
          w.state.resize(p.d, p.d_v);
          w.z.resize(p.d);
          if (p.causal) {
            w.state_f.resize(p.d, p.d_v);
            w.z_f.resize(p.d);
          }
          return w;
        }) {
    if (!p.causal) {
      const Index bh = p.batch * p.heads;
      // Eigen storage (32-byte aligned): Eigen's vectorised kernels peel unaligned heads, so
      // the alignment of a buffer can change the summation order and hence the last bit.
      partial_kv_.setZero(bh * spans_.parts * p.d * p.d_v);
      partial_z_.setZero(bh * spans_.parts * p.d);
      kv_.setZero(bh * p.d * p.d_v);
      z_.setZero(bh * p.d);
    }
  }

 protected:
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    if (problem().causal) {
      compute_causal(q, k, v, out, mask);
    } else {
      compute_global(q, k, v, out, mask);
    }
  }

 private:
  // Non-causal: KV = sum_j phi(k_j) v_j^T and z = sum_j phi(k_j) as per-span partials (parallel
  // over heads and spans), reduced in a fixed order, then out_i = phi(q_i)^T KV / (phi(q_i)^T z
  // + epsilon) over query blocks.
  void compute_global(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
                      const KeyMask& mask) {
    const Problem& p = problem();
    const Index bh_count = p.batch * p.heads, parts = spans_.parts;
    const Index d = p.d, dv = p.d_v;
    attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count * parts, 1), [&](const auto& r) {
      LinearWorkspace& w = workspaces_.local();
      for (Index task = r.begin(); task < r.end(); ++task) {
        const Index bh = task / parts, t = task % parts, b = bh / p.heads, h = bh % p.heads;
        const auto valid = mask.row(b);
        MatMap kv(partial_kv_.data() + task * d * dv, d, dv);
        Eigen::Map<Eigen::RowVectorXf> z(partial_z_.data() + task * d, d);
        kv.setZero();
        z.setZero();
        for (Index j0 = spans_.begin(t); j0 < spans_.end(t); j0 += kBlock) {
          const Index rows = std::min(kBlock, spans_.end(t) - j0);
          auto phi = w.phi_k.topRows(rows);
          elu_plus_one(ConstMatMap(k.head_data(b, h) + j0 * d, rows, d), phi);
          if (!valid.empty()) {
            for (Index j = 0; j < rows; ++j) {
              if (!valid[j0 + j]) phi.row(j).setZero();
            }
          }
          kv.noalias() += phi.transpose() * ConstMatMap(v.head_data(b, h) + j0 * dv, rows, dv);
          z += phi.colwise().sum();
        }
      }
    });
    attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count, 1), [&](const auto& r) {
      LinearWorkspace& w = workspaces_.local();
      for (Index bh = r.begin(); bh < r.end(); ++bh) {
        RowMatrixD& kv = w.state;
        auto z = w.z.transpose();
        kv.setZero();
        z.setZero();
        for (Index t = 0; t < parts; ++t) {
          kv += ConstMatMap(partial_kv_.data() + (bh * parts + t) * d * dv, d, dv).cast<double>();
          z += Eigen::Map<const Eigen::RowVectorXf>(partial_z_.data() + (bh * parts + t) * d, d)
                   .cast<double>();
        }
        MatMap(kv_.data() + bh * d * dv, d, dv) = kv.cast<float>();
        Eigen::Map<Eigen::RowVectorXf>(z_.data() + bh * d, d) = z.cast<float>();
      }
    });
    const Index q_blocks = (p.n_q + kBlock - 1) / kBlock;
    attnbench::parallel_for(
        tbb::blocked_range<Index>(0, bh_count * q_blocks, 1), [&](const auto& r) {
          LinearWorkspace& w = workspaces_.local();
          for (Index task = r.begin(); task < r.end(); ++task) {
            const Index bh = task / q_blocks, b = bh / p.heads, h = bh % p.heads;
            const Index i0 = (task % q_blocks) * kBlock, rows = std::min(kBlock, p.n_q - i0);
            auto phi = w.phi_q.topRows(rows);
            elu_plus_one(ConstMatMap(q.head_data(b, h) + i0 * d, rows, d), phi);
            MatMap o(out.head_data(b, h) + i0 * dv, rows, dv);
            o.noalias() = phi * ConstMatMap(kv_.data() + bh * d * dv, d, dv);
            auto den = w.den.head(rows);
            den.noalias() = phi * Eigen::Map<const Eigen::VectorXf>(z_.data() + bh * d, d);
            normalise_rows(o, den);
          }
        });
  }

  // Causal: chunks of C query rows; the prefix state S = sum phi(k_j) v_j^T, z = sum phi(k_j)
  // over keys before the chunk is kept in double (float prefix sums drift over long sequences),
  // keys inside the chunk's diagonal band use the masked quadratic form. Parallel over heads.
  void compute_causal(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
                      const KeyMask& mask) {
    const Problem& p = problem();
    attnbench::parallel_for(tbb::blocked_range<Index>(0, p.batch * p.heads, 1), [&](const auto& r) {
      LinearWorkspace& w = workspaces_.local();
      for (Index bh = r.begin(); bh < r.end(); ++bh) {
        const Index b = bh / p.heads, h = bh % p.heads;
        causal_head(q.head_data(b, h), k.head_data(b, h), v.head_data(b, h), mask.row(b),
                    out.head_data(b, h), w);
      }
    });
  }

  void causal_head(const float* q, const float* k, const float* v,
                   std::span<const std::uint8_t> valid, float* out, LinearWorkspace& w) const {
    const Problem& p = problem();
    const Index d = p.d, dv = p.d_v, off = p.n_k - p.n_q;
    w.state.setZero();
    w.z.setZero();
    Index state_end = 0;  // keys [0, state_end) are in the state
    // Adds keys [j0, j0 + rows) whose features are in phi_k to the state.
    auto absorb = [&](Index j0, Index rows) {
      auto phi = w.phi_k.topRows(rows);
      w.kv_tmp.noalias() = phi.transpose() * ConstMatMap(v + j0 * dv, rows, dv);
      w.state += w.kv_tmp.cast<double>();
      w.z += phi.colwise().sum().transpose().cast<double>();
    };
    auto key_features = [&](Index j0, Index rows) {
      auto phi = w.phi_k.topRows(rows);
      elu_plus_one(ConstMatMap(k + j0 * d, rows, d), phi);
      if (!valid.empty()) {
        for (Index j = 0; j < rows; ++j) {
          if (!valid[j0 + j]) phi.row(j).setZero();
        }
      }
    };
    for (Index i0 = 0; i0 < p.n_q; i0 += kCausalChunk) {
      const Index rows = std::min(kCausalChunk, p.n_q - i0);
      const Index dk0 = std::clamp<Index>(i0 + off, 0, p.n_k);
      const Index dk1 = std::clamp<Index>(i0 + rows + off, 0, p.n_k);
      // Keys visible to every row of the chunk that are not yet in the state (only before the
      // first chunk when n_k > n_q).
      while (state_end < dk0) {
        const Index n = std::min(kCausalChunk, dk0 - state_end);
        key_features(state_end, n);
        absorb(state_end, n);
        state_end += n;
      }
      w.state_f = w.state.cast<float>();
      w.z_f = w.z.cast<float>();
      auto phi_q = w.phi_q.topRows(rows);
      elu_plus_one(ConstMatMap(q + i0 * d, rows, d), phi_q);
      MatMap o(out + i0 * dv, rows, dv);
      auto den = w.den.head(rows);
      o.noalias() = phi_q * w.state_f;
      den.noalias() = phi_q * w.z_f;
      const Index nd = dk1 - dk0;
      if (nd > 0) {
        key_features(dk0, nd);
        auto pm = w.p.topLeftCorner(rows, nd);
        pm.noalias() = phi_q * w.phi_k.topRows(nd).transpose();
        // Row i sees key j iff j <= i + off.
        for (Index i = 0; i < rows; ++i) {
          const Index first_hidden = std::clamp<Index>(i0 + i + off + 1 - dk0, 0, nd);
          pm.row(i).tail(nd - first_hidden).setZero();
        }
        o.noalias() += pm * ConstMatMap(v + dk0 * dv, nd, dv);
        den += pm.rowwise().sum();
        absorb(dk0, nd);
        state_end = dk1;
      }
      normalise_rows(o, den);
    }
  }

  template <typename Den>
  void normalise_rows(MatMap o, const Den& den) const {
    for (Index i = 0; i < o.rows(); ++i) {
      const float dn = den(i) + float(epsilon_);
      // A row that sees no key has a zero numerator; with epsilon = 0 it would be 0/0.
      if (dn > 0.0f) {
        o.row(i) /= dn;
      } else {
        o.row(i).setZero();
      }
    }
  }

  double epsilon_;
  Partition spans_;
  WorkspacePool<LinearWorkspace> workspaces_;
  Eigen::VectorXf partial_kv_, partial_z_, kv_, z_;
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(linear) {
  VariantInfo info;
  info.summary = "linear attention with the elu+1 feature map (a different kernel, not softmax)";
  info.paper = "Katharopoulos et al., Transformers are RNNs, ICML 2020";
  info.traits.family = "approximate";
  info.traits.time_complexity = "O(n d d_v)";
  info.traits.memory_complexity = "O(d d_v) per head";
  info.params = {
      ParamSpec::real("epsilon", 1e-6, 0.0, 1.0,
                      "added to the denominator phi(q)^T sum phi(k) (fast-transformers: 1e-6)"),
  };
  info.make = make_factory<LinearAttention>();
  info.cost = [](const Problem& p, const ParamSet&, int threads) {
    const double bh = double(p.batch * p.heads), d = double(p.d), dv = double(p.d_v);
    const double nq = double(p.n_q), nk = double(p.n_k);
    // Features (about 4 flops per element), KV and z sums, the output and denominator products.
    double flops = bh * (4.0 * (nq + nk) * d + 2.0 * nk * d * (dv + 1) + 2.0 * nq * d * (dv + 1));
    double bytes = 0;
    const double block = double(std::max(kBlock, kCausalChunk));
    const double ws =
        double(threads) *
        ((2 * block * d + double(kCausalChunk * kCausalChunk) + d * dv + block) * 4.0 +
         (d * dv + d) * 8.0);
    if (p.causal) {
      // The masked quadratic block: 2 C (d + d_v + 1) per query row.
      flops += bh * nq * 2.0 * double(kCausalChunk) * (d + dv + 1);
      bytes = ws + double(threads) * (d * dv + d) * 4.0;
    } else {
      const double parts = double(approx::make_partition(p.n_k, kKeySpan, kMaxSpans).parts);
      bytes = ws + bh * (parts + 1) * (d * dv + d) * 4.0;
    }
    return Cost{flops, bytes};
  };
  return info;
}

}  // namespace attnbench
