// Full attention: materialises the n_q x n_k float32 score matrix, softmax by rows with max
// subtraction, two Eigen GEMMs. Time O(n_q n_k (d + d_v)), memory O(n_q n_k) per head in flight.
// Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
#include <algorithm>
#include <cmath>

#include "attention/online_softmax.h"
#include "attention/registry.h"

namespace attnbench {
namespace {

class FullAttention final : public HeadwiseAttention {
 public:
  FullAttention(const Problem& p, const ParamSet& params)
      : HeadwiseAttention("full", p, params),
        // One score matrix per head in flight, touched in setup so forward pays no page faults.
        scores_([&] { return RowMatrix::Zero(p.n_q, p.n_k).eval(); }, p.batch * p.heads) {}

 protected:
  void forward_head(const HeadInput& in, MatMap out) override {
    const Problem& p = problem();
    auto lease = scores_.acquire();
    RowMatrix& s = *lease;
    s.noalias() = float(p.effective_scale()) * (in.q * in.k.transpose());
    for (Index i = 0; i < p.n_q; ++i) {
      float* row = s.data() + i * p.n_k;
      // Excluded keys are -inf (never a finite penalty: a finite one turns a fully masked row
      // into the mean of V).
      if (!in.key_valid.empty()) {
        for (Index j = 0; j < p.n_k; ++j) {
          if (!in.key_valid[j]) row[j] = kNegInfF;
        }
      }
      if (p.causal) {
        const Index first_excluded = std::clamp<Index>(p.causal_last_key(i) + 1, 0, p.n_k);
        std::fill(row + first_excluded, row + p.n_k, kNegInfF);
      }
      float mx = kNegInfF;
      for (Index j = 0; j < p.n_k; ++j) mx = std::max(mx, row[j]);
      if (mx == kNegInfF) {
        std::fill(row, row + p.n_k, 0.0f);  // fully masked row: output 0
        continue;
      }
      float sum = 0.0f;
      for (Index j = 0; j < p.n_k; ++j) {
        row[j] = std::exp(row[j] - mx);
        sum += row[j];
      }
      const float inv = 1.0f / sum;
      for (Index j = 0; j < p.n_k; ++j) row[j] *= inv;
    }
    out.noalias() = s * in.v;
  }

 private:
  WorkspacePool<RowMatrix> scores_;
};

}  // namespace

ATTNBENCH_REGISTER_VARIANT(full) {
  VariantInfo info;
  info.summary = "exact attention, n_q x n_k float32 scores materialised (the classic baseline)";
  info.paper = "Vaswani et al., Attention Is All You Need, NeurIPS 2017";
  info.traits.family = "exact";
  info.traits.exact = true;
  info.traits.time_complexity = "O(n_q n_k (d + d_v))";
  info.traits.memory_complexity = "O(n_q n_k) per head in flight";
  info.make = make_factory<FullAttention>();
  info.cost = [](const Problem& p, const ParamSet&, int threads) {
    const double bh = double(p.batch * p.heads);
    const double in_flight = std::min<double>(threads, bh);
    return Cost{bh * 2.0 * double(p.n_q) * double(p.n_k) * double(p.d + p.d_v),
                in_flight * double(p.n_q) * double(p.n_k) * sizeof(float)};
  };
  return info;
}

}  // namespace attnbench
