// Chunked exact attention as in the paper's reference code: per query chunk, a summary
// (row max m_c, weight w_c, numerator y_c) of every key chunk, combined at the end.
// Time O(n_q n_k (d + d_v)); memory O(query_chunk (key_chunk + (n_k / key_chunk) d_v)) per thread.
// Rabe & Staats, "Self-attention Does Not Need O(n^2) Memory", arXiv 2112.05682, 2021.
#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/registry.h"

namespace attnbench {
namespace {

struct ChunkedWorkspace {
  RowMatrix scores;   // (query_chunk, key_chunk)
  RowMatrix maxima;   // (query_chunk, key_chunks): m_c per row
  RowMatrix weights;  // (query_chunk, key_chunks): w_c per row
  RowMatrix numer;    // (key_chunks * query_chunk, d_v): y_c, chunk-major
};

class ChunkedAttention final : public HeadwiseAttention {
 public:
  ChunkedAttention(const Problem& p, const ParamSet& params)
      : HeadwiseAttention("chunked", p, params),
        cq_(std::min<Index>(params.get_int("query_chunk"), p.n_q)),
        ck_(std::min<Index>(params.get_int("key_chunk"), p.n_k)),
        chunks_((p.n_k + ck_ - 1) / ck_),
        workspaces_(
            [&] {
              ChunkedWorkspace w;
              w.scores = RowMatrix::Zero(cq_, ck_);
              w.maxima = RowMatrix::Zero(cq_, chunks_);
              w.weights = RowMatrix::Zero(cq_, chunks_);
              w.numer = RowMatrix::Zero(chunks_ * cq_, p.d_v);
              return w;
            },
            p.batch * p.heads) {
    // The paper clips each chunk size to the sequence length; report the sizes used.
    params_.set("query_chunk", cq_);
    params_.set("key_chunk", ck_);
  }

 protected:
  // q (n_q, d), k (n_k, d), v (n_k, d_v) -> out (n_q, d_v).
  void forward_head(const HeadInput& in, MatMap out) override {
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    const Problem& p = problem();
    const float scale = float(p.effective_scale());
    auto lease = workspaces_.acquire();
    ChunkedWorkspace& w = *lease;
    for (Index i0 = 0; i0 < p.n_q; i0 += cq_) {
      const Index rows = std::min(cq_, p.n_q - i0);
      // 1. One summary per key chunk.
      for (Index c = 0; c < chunks_; ++c) {
        const Index j0 = c * ck_, cols = std::min(ck_, p.n_k - j0);
        auto s = w.scores.topLeftCorner(rows, cols);
        s.noalias() = scale * (in.q.middleRows(i0, rows) * in.k.middleRows(j0, cols).transpose());
        for (Index r = 0; r < rows; ++r) {
          for (Index j = 0; j < cols; ++j) {
            const bool valid = in.key_valid.empty() || in.key_valid[j0 + j] != 0;
            if (!valid || !p.allowed(i0 + r, j0 + j)) s(r, j) = kNegInf;
          }
          const float m = s.row(r).maxCoeff();
          w.maxima(r, c) = m;
          // A chunk with nothing allowed for this row has m_c = -inf: its summary is empty and
          // exp(-inf - (-inf)) is never evaluated.
          if (m == kNegInf) {
            s.row(r).setZero();
          } else {
            s.row(r) = (s.row(r).array() - m).exp().matrix();
          }
          w.weights(r, c) = s.row(r).sum();
        }
        w.numer.middleRows(c * cq_, rows).noalias() = s * in.v.middleRows(j0, cols);
      }
      // 2. Combine: o = sum_c e^(m_c - M) y_c / sum_c e^(m_c - M) w_c, M = max_c m_c.
      for (Index r = 0; r < rows; ++r) {
        const float big_m = w.maxima.row(r).head(chunks_).maxCoeff();
        auto o = out.row(i0 + r);
        o.setZero();
        if (big_m == kNegInf) continue;  // fully masked row: zeros
        float denom = 0.0f;
        for (Index c = 0; c < chunks_; ++c) {
          if (w.maxima(r, c) == kNegInf) continue;
          const float f = std::exp(w.maxima(r, c) - big_m);
          denom += f * w.weights(r, c);
          o.noalias() += f * w.numer.row(c * cq_ + r);
        }
        o /= denom;
      }
    }
  }

 private:
  Index cq_, ck_, chunks_;
  WorkspacePool<ChunkedWorkspace> workspaces_;
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(chunked) {
  VariantInfo info;
  info.summary = "exact attention in query/key chunks with per-chunk summaries (Rabe & Staats)";
  info.paper = "Rabe & Staats, Self-attention Does Not Need O(n^2) Memory, arXiv 2112.05682";
  info.traits.family = "exact";
  info.traits.exact = true;
  info.traits.time_complexity = "O(n_q n_k (d + d_v))";
  info.traits.memory_complexity = "O(query_chunk (key_chunk + n_k d_v / key_chunk)) per thread";
  info.params = {
      ParamSpec::integer("query_chunk", 1024, 1, 1 << 20, "query rows per chunk; clipped to n_q"),
      ParamSpec::integer("key_chunk", 4096, 1, 1 << 20, "keys per chunk; clipped to n_k"),
  };
  info.make = make_factory<ChunkedAttention>();
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    const double cq = double(std::min<Index>(s.get_int("query_chunk"), p.n_q));
    const double ck = double(std::min<Index>(s.get_int("key_chunk"), p.n_k));
    const double chunks = std::ceil(double(p.n_k) / ck);
    const double per_thread = cq * ck + 2 * cq * chunks + chunks * cq * double(p.d_v);
    const double heads = double(p.batch * p.heads);
    return Cost{heads * 2.0 * double(p.n_q) * double(p.n_k) * double(p.d + p.d_v),
                std::min<double>(threads, heads) * per_thread * sizeof(float)};
  };
  return info;
}

}  // namespace attnbench
