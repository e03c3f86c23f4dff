#include "tests/testing/test_util.h"

#include <algorithm>

#include "attention/random.h"

namespace attnbench::testing {

Tensor4 random_tensor(Index batch, Index heads, Index rows, Index cols, std::uint64_t seed,
                      double stddev) {
  Tensor4 t(batch, heads, rows, cols);
  Rng rng(seed, 0x7e57);
  for (float& x : t.storage()) x = static_cast<float>(stddev * rng.normal());
  return t;
}

Problem make_problem(Index n_q, Index n_k, Index d, Index d_v, Index batch, Index heads,
                     bool causal, bool key_padding) {
  Problem p;
  p.batch = batch;
  p.heads = heads;
  p.n_q = n_q;
  p.n_k = n_k;
  p.d = d;
  p.d_v = d_v;
  p.causal = causal;
  p.key_padding = key_padding;
  return p;
}

Inputs make_inputs(const Problem& p, std::uint64_t seed, double temperature) {
  Inputs in;
  in.q = random_tensor(p.batch, p.heads, p.n_q, p.d, seed * 3 + 0, temperature);
  in.k = random_tensor(p.batch, p.heads, p.n_k, p.d, seed * 3 + 1);
  in.v = random_tensor(p.batch, p.heads, p.n_k, p.d_v, seed * 3 + 2);
  if (p.key_padding) {
    std::vector<Index> lengths;
    for (Index b = 0; b < p.batch; ++b) {
      lengths.push_back(std::max<Index>(1, p.n_k - b * (p.n_k / (p.batch + 1))));
    }
    in.mask = KeyMask::from_lengths(p.n_k, lengths);
  }
  return in;
}

Tensor4 run_variant(const std::string& variant, const Json& params, const Problem& p,
                    const Inputs& in) {
  auto attn = make_attention(variant, p, params);
  Tensor4 out(p.batch, p.heads, p.n_q, p.d_v);
  attn->forward(in.q, in.k, in.v, out, in.mask);
  return out;
}

ErrorMetrics error_vs_reference(const Tensor4& out, const Problem& p, const Inputs& in,
                                ReferenceKind kind) {
  const auto rows = all_rows(p.n_q);
  const auto ref = reference_attention(in.q, in.k, in.v, in.mask, p, kind, rows);
  return compute_error(out, in.v, ref);
}

double exact_tolerance(const Problem& p, const Inputs& in) {
  double max_q = 0, max_k = 0, max_v = 0;
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      max_q = std::max<double>(max_q, in.q.head(b, h).rowwise().norm().maxCoeff());
      max_k = std::max<double>(max_k, in.k.head(b, h).rowwise().norm().maxCoeff());
    }
  }
  for (float x : in.v.storage()) max_v = std::max<double>(max_v, std::fabs(x));
  const double logit_bound = p.effective_scale() * max_q * max_k;
  const double logit_err = kFloatEps * std::sqrt(double(p.d)) * (1.0 + logit_bound);
  const double sum_err = kFloatEps * (std::log2(double(p.n_k)) + 2.0);
  return 8.0 * (logit_err + sum_err) * std::max(1.0, max_v);
}

double max_abs_diff(const Tensor4& x, const Tensor4& y) {
  if (x.size() != y.size()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (Index i = 0; i < x.size(); ++i) {
    const double e = std::fabs(double(x.data()[i]) - double(y.data()[i]));
    if (!std::isfinite(e)) return std::numeric_limits<double>::infinity();
    m = std::max(m, e);
  }
  return m;
}

bool all_finite(const Tensor4& t) {
  for (float x : t.storage()) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

}  // namespace attnbench::testing
