// Performer (FAVOR+): softmax kernel estimated with m positive (or hyperbolic) random features,
// orthogonal (Haar, chi-rescaled) or iid. Time O(n m (d + d_v)), memory O(m d_v) per head plus
// fixed scratch; error falls like m^-1/2 on small-norm inputs. Choromanski et al., "Rethinking
// Attention with Performers", ICLR 2021.
//
// Features phi(x)_f = m^-1/2 (exp(+-<w_f, x'> - |x'|^2/2 - c) + epsilon), x' = scale^1/2 x.
// Stabilisers as the references define them: c = the row's largest projection for a query, and
// one constant for all keys (the largest projection over every valid key of the slice). They
// cancel exactly when epsilon = 0; with epsilon > 0 they set how large epsilon is relative to
// the features, and are reproduced exactly. Internally every exponential is taken relative to
// the largest exponent (of the row, or of a block of keys, merged by rescaling), so nothing
// overflows or underflows wholesale whatever the input norms; the reference constants enter
// as double-precision factors. Causal: chunked prefix sums accumulated in double; the key
// constant of a causal row is the largest projection over the keys it may see (a tensor-wide
// maximum would leak later keys into earlier rows when epsilon > 0).
#include <tbb/blocked_range.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>
#include <vector>

#include "attention/parallel.h"
#include "attention/registry.h"
#include "variants/approximate/approx_common.h"
#include "variants/approximate/feature_maps.h"

namespace attnbench {
namespace {

using approx::kNegInf;
using approx::Partition;

constexpr Index kKeySpan = 1024;    // keys per partial sum (non-causal)
constexpr Index kMaxSpans = 64;     // partial sums per head
constexpr Index kBlock = 256;       // rows per feature block: (block, m) stays in L2
constexpr Index kCausalChunk = 64;  // quadratic block of the chunked causal form
// A causal row whose denominator, relative to its chunk's reference exponent, falls below this
// is recomputed in double with its own reference (see rescue_row). Float terms that underflow
// are each below FLT_MIN (1.2e-38), so above the threshold the mass they can drop is below
// (terms) x 1.2e-38 / 2^-60, about 1e-20 per term, relative.
constexpr float kRescueDen = 0x1p-60f;

// Sums over a set of keys, with features taken relative to the reference exponent `ref`:
// kv = sum_j exp(u_j - ref) v_j^T, z = sum_j exp(u_j - ref), plus what the epsilon terms need.
struct KeySums {
  RowMatrixD kv;             // (m, d_v)
  Eigen::RowVectorXd z;      // (m)
  Eigen::RowVectorXd sum_v;  // (d_v): sum of v over the valid keys
  double ref = -std::numeric_limits<double>::infinity();
  double proj_max = -std::numeric_limits<double>::infinity();  // the references' key constant
  Index count = 0;                                             // valid keys

  void reset(Index m, Index dv) {
    kv.setZero(m, dv);
    z.setZero(m);
    sum_v.setZero(dv);
    ref = proj_max = -std::numeric_limits<double>::infinity();
    count = 0;
  }
  // Re-expresses the sums relative to new_ref >= ref.
  void rebase(double new_ref) {
    if (new_ref == ref) return;
    const double s =
        ref == -std::numeric_limits<double>::infinity() ? 0.0 : std::exp(ref - new_ref);
    kv *= s;
    z *= s;
    ref = new_ref;
  }
};

struct PerformerWorkspace {
  RowMatrix u;                        // (block, m): exponents, then features, of queries
  RowMatrix uk;                       // (block, m): of keys
  RowMatrix p;                        // (chunk, chunk) causal quadratic block
  RowMatrix kv_tmp;                   // (m, d_v)
  RowMatrix kv_f;                     // (m, d_v) float copy of the causal state
  Eigen::VectorXf z_f;                // (m)
  Eigen::RowVectorXf z_tmp;           // (m)
  Eigen::VectorXf den;                // (block)
  Eigen::VectorXf row_aux;            // (block) row sums of the query features (epsilon terms)
  Eigen::VectorXf gamma;              // (block) per-row key factors (causal, epsilon > 0)
  std::vector<float> proj_q, proj_k;  // (block) largest projection per row
  KeySums state;                      // causal prefix state
  RowMatrix rescue_q, rescue_k;       // (1, m), (block, m): exponents for rescue_row
  Eigen::VectorXd rescue_acc;         // (d_v)
};

class Performer final : public Attention {
 public:
  Performer(const Problem& p, const ParamSet& params)
      : Attention("performer", p, params),
        m_(params.get_int("features")),
        kind_(parse_favor_kind(params.get_string("kind"))),
        epsilon_(params.get_double("epsilon")),
        spans_(approx::make_partition(p.n_k, kKeySpan, kMaxSpans)) {
    if (kind_ == FavorKind::kHyperbolic && m_ % 2 != 0) {
      reject("features", m_, "an even number for kind = hyperbolic (pairs of +-w features)");
    }
    const bool orthogonal = params.get_bool("orthogonal");
    const auto seed = std::uint64_t(params.get_int("seed"));
    const float sqrt_scale = float(std::sqrt(p.effective_scale()));
    for (Index h = 0; h < p.heads; ++h) {
      w_.push_back(sqrt_scale * favor_projection_for_head(seed, h, m_, kind_, p.d, orthogonal));
    }
    const Index bh = p.batch * p.heads;
    if (!p.causal) {
      partials_.resize(bh * spans_.parts);
      for (auto& s : partials_) s.reset(m_, p.d_v);
      merged_.resize(bh);
      for (auto& s : merged_) s.reset(m_, p.d_v);
      kv_.setZero(bh * m_ * p.d_v);
      z_.setZero(bh * m_);
      empty_.assign(bh, 0);
    }
    workspaces_.emplace([&] {
      PerformerWorkspace w;
      w.u.resize(kBlock, m_);
      w.uk.resize(kBlock, m_);
      w.p.resize(kCausalChunk, kCausalChunk);
      w.kv_tmp.resize(m_, p.d_v);
      w.kv_f.resize(m_, p.d_v);
      w.z_f.resize(m_);
      w.z_tmp.resize(m_);
      w.den.resize(kBlock);
      w.row_aux.resize(kBlock);
      w.gamma.resize(kBlock);
      w.proj_q.resize(kBlock);
      w.proj_k.resize(kBlock);
      if (p.causal) {
        w.state.reset(m_, p.d_v);
        w.rescue_q.resize(1, m_);
        w.rescue_k.resize(kBlock, m_);
        w.rescue_acc.resize(p.d_v);
      }
      return w;
    });
  }

  // Causal: rows of the last forward recomputed with their own reference (rescue_row).
  Json diagnostics() const override { return {{"causal_rows_rescued", rows_rescued_.load()}}; }

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
  // Key features of rows [j0, j0 + rows) of one head into w.uk, relative to a reference exponent
  // `ref` chosen by `choose_ref(block max)`; padded keys get zero rows. Returns the block's
  // largest exponent (-inf when every key is padded).
  template <typename ChooseRef>
  double key_features(const float* k, std::span<const std::uint8_t> valid, Index h, Index j0,
                      Index rows, PerformerWorkspace& w, ChooseRef&& choose_ref) const {
    const Index d = problem().d;
    auto u = w.uk.topRows(rows);
    favor_exponents(ConstMatMap(k + j0 * d, rows, d), w_[h], problem().effective_scale(), kind_, u,
                    w.proj_k.data());
    float block_max = kNegInf;
    for (Index j = 0; j < rows; ++j) {
      if (!valid.empty() && !valid[j0 + j]) {
        u.row(j).setConstant(kNegInf);
        w.proj_k[j] = kNegInf;
        continue;
      }
      block_max = std::max(block_max, u.row(j).maxCoeff());
    }
    const double ref = choose_ref(double(block_max));
    if (ref == -std::numeric_limits<double>::infinity()) {
      u.setZero();
    } else {
      u.array() = (u.array() - float(ref)).exp();  // exp(-inf) = 0 for padded keys
    }
    return double(block_max);
  }

  // Adds the keys whose features (relative to ref) are in w.uk to `sums` (already rebased to
  // ref). v_rows points at the keys' values.
  void absorb(KeySums& sums, const float* v_rows, std::span<const std::uint8_t> valid, Index j0,
              Index rows, PerformerWorkspace& w) const {
    const Index dv = problem().d_v;
    auto b = w.uk.topRows(rows);
    const ConstMatMap vm(v_rows, rows, dv);
    w.kv_tmp.noalias() = b.transpose() * vm;
    sums.kv += w.kv_tmp.cast<double>();
    // Row by row: a column sum of a row-major block would walk down columns.
    auto& zsum = w.z_tmp;
    zsum = b.row(0);
    for (Index j = 1; j < rows; ++j) zsum += b.row(j);
    sums.z += zsum.cast<double>();
    for (Index j = 0; j < rows; ++j) {
      if (!valid.empty() && !valid[j0 + j]) continue;
      sums.sum_v += vm.row(j).cast<double>();
      sums.proj_max = std::max(sums.proj_max, double(w.proj_k[j]));
      ++sums.count;
    }
  }

  // Query features of rows [i0, i0 + rows) into w.u: A = eta_i a_i + epsilon, where a_i =
  // exp(u_i - max u_i) and eta_i = exp(max u_i - proj_max_i) = exp(-|q'_i|^2/2) restores the
  // references' per-row constant (it cancels, and is skipped, when epsilon = 0). w.row_aux
  // receives the row sums of A.
  void query_features(const float* q, Index h, Index i0, Index rows, PerformerWorkspace& w) const {
    const Index d = problem().d;
    auto u = w.u.topRows(rows);
    if (kind_ == FavorKind::kPositive && epsilon_ == 0.0) {
      // u_if - max_f u_if = <w_f, q'_i> - max_f <w_f, q'_i>: the norm term is a row constant,
      // so the projections go straight to the exponential (one pass fewer over the block).
      u.noalias() = ConstMatMap(q + i0 * d, rows, d) * w_[h].transpose();
      for (Index i = 0; i < rows; ++i) {
        auto row = u.row(i).array();
        row = (row - row.maxCoeff()).exp();
      }
      return;
    }
    favor_exponents(ConstMatMap(q + i0 * d, rows, d), w_[h], problem().effective_scale(), kind_, u,
                    w.proj_q.data());
    for (Index i = 0; i < rows; ++i) {
      auto row = u.row(i).array();
      const float mx = row.maxCoeff();
      row = (row - mx).exp();
      if (epsilon_ > 0.0) {
        const float eta = float(std::exp(double(mx) - double(w.proj_q[i])));
        row = eta * row + float(epsilon_);
        w.row_aux(i) = row.sum();
      }
    }
  }

  // Non-causal: per-span key sums (parallel over heads and spans), merged per head in a fixed
  // order, then out = A KV_eff / A z_eff over query blocks.
  void compute_global(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
                      const KeyMask& mask) {
    const Problem& p = problem();
    const Index bh_count = p.batch * p.heads, parts = spans_.parts, dv = p.d_v;
    attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count * parts, 1), [&](const auto& r) {
      PerformerWorkspace& w = workspaces_->local();
      for (Index task = r.begin(); task < r.end(); ++task) {
        const Index bh = task / parts, t = task % parts, b = bh / p.heads, h = bh % p.heads;
        const auto valid = mask.row(b);
        KeySums& sums = partials_[task];
        sums.reset(m_, dv);
        for (Index j0 = spans_.begin(t); j0 < spans_.end(t); j0 += kBlock) {
          const Index rows = std::min(kBlock, spans_.end(t) - j0);
          key_features(k.head_data(b, h), valid, h, j0, rows, w, [&](double block_max) {
            sums.rebase(std::max(sums.ref, block_max));
            return sums.ref;
          });
          absorb(sums, v.head_data(b, h) + j0 * dv, valid, j0, rows, w);
        }
      }
    });
    attnbench::parallel_for(tbb::blocked_range<Index>(0, bh_count, 1), [&](const auto& r) {
      for (Index bh = r.begin(); bh < r.end(); ++bh) merge_spans(bh);
    });
    const Index q_blocks = (p.n_q + kBlock - 1) / kBlock;
    attnbench::parallel_for(
        tbb::blocked_range<Index>(0, bh_count * q_blocks, 1), [&](const auto& r) {
          PerformerWorkspace& w = workspaces_->local();
          for (Index task = r.begin(); task < r.end(); ++task) {
            const Index bh = task / q_blocks, b = bh / p.heads, h = bh % p.heads;
            const Index i0 = (task % q_blocks) * kBlock, rows = std::min(kBlock, p.n_q - i0);
            MatMap o(out.head_data(b, h) + i0 * dv, rows, dv);
            if (empty_[bh]) {
              o.setZero();
              continue;
            }
            query_features(q.head_data(b, h), h, i0, rows, w);
            auto a = w.u.topRows(rows);
            o.noalias() = a * ConstMatMap(kv_.data() + bh * m_ * dv, m_, dv);
            auto den = w.den.head(rows);
            den.noalias() = a * Eigen::Map<const Eigen::VectorXf>(z_.data() + bh * m_, m_);
            normalise_rows(o, den);
          }
        });
  }

  // KV_eff = gamma KV + epsilon 1 sum_v^T and z_eff = gamma z + epsilon count 1, with
  // gamma = exp(ref - key constant) (1 when epsilon = 0: it cancels).
  void merge_spans(Index bh) {
    const Index parts = spans_.parts, dv = problem().d_v;
    KeySums& total = merged_[bh];
    total.reset(m_, dv);
    for (Index t = 0; t < parts; ++t) {
      total.ref = std::max(total.ref, partials_[bh * parts + t].ref);
    }
    for (Index t = 0; t < parts; ++t) {
      const KeySums& s = partials_[bh * parts + t];
      if (s.count == 0) continue;
      const double f = std::exp(s.ref - total.ref);
      total.kv += f * s.kv;
      total.z += f * s.z;
      total.sum_v += s.sum_v;
      total.count += s.count;
      total.proj_max = std::max(total.proj_max, s.proj_max);
    }
    empty_[bh] = total.count == 0;
    MatMap kv(kv_.data() + bh * m_ * dv, m_, dv);
    Eigen::Map<Eigen::RowVectorXf> z(z_.data() + bh * m_, m_);
    if (empty_[bh]) return;
    if (epsilon_ > 0.0) {
      const double gamma = std::exp(total.ref - total.proj_max);
      kv = ((gamma * total.kv).rowwise() + epsilon_ * total.sum_v).cast<float>();
      z = ((gamma * total.z).array() + epsilon_ * double(total.count)).cast<float>();
    } else {
      kv = total.kv.cast<float>();
      z = total.z.cast<float>();
    }
  }

  void compute_causal(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
                      const KeyMask& mask) {
    const Problem& p = problem();
    rows_rescued_ = 0;
    attnbench::parallel_for(tbb::blocked_range<Index>(0, p.batch * p.heads, 1), [&](const auto& r) {
      PerformerWorkspace& w = workspaces_->local();
      for (Index bh = r.begin(); bh < r.end(); ++bh) {
        const Index b = bh / p.heads, h = bh % p.heads;
        causal_head(q.head_data(b, h), k.head_data(b, h), v.head_data(b, h), mask.row(b), h,
                    out.head_data(b, h), w);
      }
    });
  }

  // Chunks of C query rows. Keys before the chunk's diagonal band are in the prefix state (in
  // double, relative to its reference exponent); keys in the band use the masked quadratic form
  // with the same features, then join the state.
  void causal_head(const float* q, const float* k, const float* v,
                   std::span<const std::uint8_t> valid, Index h, float* out,
                   PerformerWorkspace& w) const {
    const Problem& p = problem();
    const Index dv = p.d_v, off = p.n_k - p.n_q;
    KeySums& state = w.state;
    state.reset(m_, dv);
    Index state_end = 0;
    auto add_to_state = [&](Index j0, Index rows) {
      key_features(k, valid, h, j0, rows, w, [&](double block_max) {
        state.rebase(std::max(state.ref, block_max));
        return state.ref;
      });
      absorb(state, v + j0 * dv, valid, j0, rows, w);
    };
    for (Index i0 = 0; i0 < p.n_q; i0 += kCausalChunk) {
      const Index rows = std::min(kCausalChunk, p.n_q - i0);
      const Index dk0 = std::clamp<Index>(i0 + off, 0, p.n_k);
      const Index dk1 = std::clamp<Index>(i0 + rows + off, 0, p.n_k);
      while (state_end < dk0) {  // only before the first chunk when n_k > n_q
        const Index n = std::min(kCausalChunk, dk0 - state_end);
        add_to_state(state_end, n);
        state_end += n;
      }
      const Index nd = dk1 - dk0;
      // Band keys relative to rho = max(state reference, band maximum); the state is rebased to
      // rho so both parts share one reference.
      if (nd > 0) {
        key_features(k, valid, h, dk0, nd, w, [&](double block_max) {
          state.rebase(std::max(state.ref, block_max));
          return state.ref;
        });
      }
      MatMap o(out + i0 * dv, rows, dv);
      if (state.ref == -std::numeric_limits<double>::infinity()) {
        o.setZero();  // no valid key visible to any row of the chunk
      } else {
        causal_chunk(q, k, v, valid, h, i0, rows, dk0, nd, o, w);
      }
      if (nd > 0) {
        absorb(state, v + dk0 * dv, valid, dk0, nd, w);
        state_end = dk1;
      }
    }
  }

  void causal_chunk(const float* q, const float* k, const float* v,
                    std::span<const std::uint8_t> valid, Index h, Index i0, Index rows, Index dk0,
                    Index nd, MatMap o, PerformerWorkspace& w) const {
    const Problem& p = problem();
    const Index off = p.n_k - p.n_q;
    const KeySums& state = w.state;
    query_features(q, h, i0, rows, w);
    auto a = w.u.topRows(rows);
    auto den = w.den.head(rows);
    w.kv_f = state.kv.cast<float>();
    w.z_f = state.z.transpose().cast<float>();
    o.noalias() = a * w.kv_f;
    den.noalias() = a * w.z_f;
    auto pm = w.p.topLeftCorner(rows, nd);
    if (nd > 0) pm.noalias() = a * w.uk.topRows(nd).transpose();
    if (epsilon_ == 0.0) {
      for (Index i = 0; i < rows; ++i) {
        const Index first_hidden = std::clamp<Index>(i0 + i + off + 1 - dk0, 0, nd);
        pm.row(i).tail(nd - first_hidden).setZero();
      }
    } else {
      // Row i: key constant c_i = largest projection over the keys it sees, gamma_i =
      // exp(rho - c_i); the epsilon part of phi_k adds epsilon * rowsum(A_i) per visible key.
      double c = state.proj_max;
      Index count = state.count, next = 0;
      for (Index i = 0; i < rows; ++i) {
        const Index visible = std::clamp<Index>(i0 + i + off + 1 - dk0, 0, nd);
        for (; next < visible; ++next) {
          if (!valid.empty() && !valid[dk0 + next]) continue;
          c = std::max(c, double(w.proj_k[next]));
          ++count;
        }
        if (count == 0) {
          w.gamma(i) = 0.0f;
          o.row(i).setZero();
          den(i) = 0.0f;
          if (nd > 0) pm.row(i).setZero();
          continue;
        }
        const float gamma = float(std::exp(state.ref - c));
        const float eps_row = float(epsilon_) * w.row_aux(i);
        o.row(i) = gamma * o.row(i) + float(eps_row) * state.sum_v.cast<float>();
        den(i) = gamma * den(i) + eps_row * float(state.count);
        for (Index j = 0; j < nd; ++j) {
          const bool seen = j < visible && (valid.empty() || valid[dk0 + j]);
          pm(i, j) = seen ? gamma * pm(i, j) + eps_row : 0.0f;
        }
      }
    }
    if (nd > 0) {
      o.noalias() += pm * ConstMatMap(v + dk0 * p.d_v, nd, p.d_v);
      den += pm.rowwise().sum();
    }
    // With epsilon = 0 a row's terms can all but vanish against the chunk's reference (a later
    // key of the chunk has far larger exponents than any key the row may see): such rows are
    // recomputed with their own reference. (With epsilon > 0 the epsilon terms bound the
    // denominator from below.)
    Index rescued = 0;
    if (epsilon_ == 0.0) {
      for (Index i = 0; i < rows; ++i) {
        if (den(i) >= kRescueDen) continue;
        den(i) = 1.0f;  // normalise_rows leaves the row alone; rescue_row rewrites it
        rescue_row(q, k, v, valid, h, i0 + i, o.row(i).data(), w);
        ++rescued;
      }
    }
    if (rescued) rows_rescued_ += rescued;
    normalise_rows(o, den);
  }

  // One causal row in double with its own reference: o_i = sum_j w_ij v_j / sum_j w_ij with
  // w_ij = sum_f exp(u_if + u_jf - M_i) over the valid keys it may see, M_i the largest
  // exponent of the row (the estimate of the references, without their cancelling constants).
  // O(i m d): only for the rare rows the chunked form cannot represent in float.
  void rescue_row(const float* q, const float* k, const float* v,
                  std::span<const std::uint8_t> valid, Index h, Index i, float* out_row,
                  PerformerWorkspace& w) const {
    const Problem& p = problem();
    const Index d = p.d, dv = p.d_v;
    const Index key_end = std::clamp<Index>(i + p.n_k - p.n_q + 1, 0, p.n_k);
    favor_exponents(ConstMatMap(q + i * d, 1, d), w_[h], p.effective_scale(), kind_, w.rescue_q,
                    nullptr);
    double mx = -std::numeric_limits<double>::infinity(), den = 0.0;
    Eigen::VectorXd& acc = w.rescue_acc;
    acc.setZero();
    for (Index j0 = 0; j0 < key_end; j0 += kBlock) {
      const Index rows = std::min(kBlock, key_end - j0);
      auto u = w.rescue_k.topRows(rows);
      favor_exponents(ConstMatMap(k + j0 * d, rows, d), w_[h], p.effective_scale(), kind_, u,
                      nullptr);
      for (Index j = 0; j < rows; ++j) {
        if (!valid.empty() && !valid[j0 + j]) continue;
        double row_max = -std::numeric_limits<double>::infinity();
        for (Index f = 0; f < m_; ++f) {
          row_max = std::max(row_max, double(w.rescue_q(0, f)) + double(u(j, f)));
        }
        if (row_max > mx) {
          const double s = den > 0.0 ? std::exp(mx - row_max) : 0.0;
          acc *= s;
          den *= s;
          mx = row_max;
        }
        double weight = 0.0;
        for (Index f = 0; f < m_; ++f) {
          weight += std::exp(double(w.rescue_q(0, f)) + double(u(j, f)) - mx);
        }
        den += weight;
        for (Index c = 0; c < dv; ++c) acc(c) += weight * double(v[(j0 + j) * dv + c]);
      }
    }
    for (Index c = 0; c < dv; ++c) out_row[c] = den > 0.0 ? float(acc(c) / den) : 0.0f;
  }

  template <typename Den>
  static void normalise_rows(MatMap o, const Den& den) {
    for (Index i = 0; i < o.rows(); ++i) {
      // Zero (never NaN) for a row whose visible keys all carry zero weight.
      if (den(i) > 0.0f) {
        o.row(i) /= den(i);
      } else {
        o.row(i).setZero();
      }
    }
  }

  Index m_;
  FavorKind kind_;
  double epsilon_;
  Partition spans_;
  std::vector<RowMatrix> w_;                    // per head: scale^1/2 W (directions, d)
  std::vector<KeySums> partials_;               // (heads x batch, spans) non-causal partial sums
  std::vector<KeySums> merged_;                 // per (b, h): the partials merged
  Eigen::VectorXf kv_, z_;                      // per (b, h): KV_eff (m, d_v), z_eff (m)
  std::vector<std::uint8_t> empty_;             // per (b, h): no valid key
  mutable std::atomic<Index> rows_rescued_{0};  // causal rows recomputed by rescue_row
  std::optional<WorkspacePool<PerformerWorkspace>> workspaces_;  // built in the constructor body
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(performer) {
  VariantInfo info;
  info.summary = "Performer FAVOR+: softmax kernel by positive orthogonal random features";
  info.paper = "Choromanski et al., Rethinking Attention with Performers, ICLR 2021";
  info.traits.family = "approximate";
  info.traits.randomized = true;
  info.traits.time_complexity = "O(n m (d + d_v))";
  info.traits.memory_complexity = "O(m d_v) per head";
  info.params = {
      ParamSpec::integer("features", 256, 1, 1 << 16,
                         "m, the number of random features (Google's default 256); "
                         "hyperbolic uses m/2 directions, each giving a +-w pair"),
      ParamSpec::boolean("orthogonal", true,
                         "orthogonal random features (Haar blocks, chi-distributed row norms); "
                         "false draws iid N(0, 1) directions"),
      ParamSpec::real("epsilon", 0.0, 0.0, 1.0,
                      "added to every (stabilised) feature; > 0 biases the output toward the "
                      "mean of V (lucidrains 1e-4, Google 1e-6)"),
      ParamSpec::choice("kind", "positive", {"positive", "hyperbolic"},
                        "positive: exp(w.x - |x|^2/2); hyperbolic: pairs exp(+-w.x - |x|^2/2) "
                        "(lower variance)"),
      ParamSpec::integer("seed", 0, 0, 1e15,
                         "seed of the random directions, drawn per head, shared across the batch"),
  };
  info.make = make_factory<Performer>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const double m = double(s.get_int("features")), d = double(p.d), dv = double(p.d_v);
    const double bh = double(p.batch * p.heads), nq = double(p.n_q), nk = double(p.n_k);
    // Projections (2 n d m counting the +-w pairs once), about 4 flops per exponent, the KV and z
    // sums and the output and denominator products.
    const double dirs = s.get_string("kind") == "hyperbolic" ? m / 2 : m;
    double flops = bh * ((nq + nk) * (2.0 * d * dirs + 4.0 * m) + 2.0 * nk * m * (dv + 1) +
                         2.0 * nq * m * (dv + 1));
    const double ws = double(threads) * 4.0 *
                          (2.0 * double(kBlock) * m + double(kCausalChunk * kCausalChunk) +
                           2.0 * m * dv + 5.0 * double(kBlock)) +
                      double(threads) * 8.0 * m * (dv + 1);
    double bytes = double(p.heads) * dirs * d * 4.0 + ws;
    if (p.causal) {
      flops += bh * nq * 2.0 * double(kCausalChunk) * (m + dv + 1);
    } else {
      const double parts = double(approx::make_partition(p.n_k, kKeySpan, kMaxSpans).parts);
      bytes += bh * (parts + 1) * 8.0 * (m * (dv + 1) + dv) + bh * 4.0 * m * (dv + 1);
    }
    return Cost{flops, bytes};
  };
  return info;
}

}  // namespace attnbench
