// Helpers for the hierarchical family's tests: local-decay inputs (reference/variants.md §8.3),
// a dense double-precision attention over arbitrary per-pair logits, and error checks.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <string>

#include "attention/random.h"
#include "tests/testing/test_util.h"

namespace attnbench::testing {

inline constexpr double kNegInfD = -std::numeric_limits<double>::infinity();

// Positional sinusoidal q and k (the same features for both), so that with the default scale
// <q_i, k_j> / sqrt(d) = (alpha / F) sum_f cos(w_f (i - j)), F = d / 2, frequencies geometric
// between 2 pi / (4 n) and 2 pi / 4: logits peak at i = j and decay with distance. V is
// Gaussian from the seed (a different draw per head and batch entry). d must be even.
inline Inputs local_decay_inputs(const Problem& p, double alpha, std::uint64_t seed) {
  Inputs in = make_inputs(p, seed);
  const Index f_count = p.d / 2;
  const double w_min = 2 * std::numbers::pi / (4.0 * double(p.n_k));
  const double w_max = 2 * std::numbers::pi / 4.0;
  const double amp = std::sqrt(alpha * std::sqrt(double(p.d)) / double(f_count));
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      for (Tensor4* t : {&in.q, &in.k}) {
        auto m = t->head(b, h);
        for (Index i = 0; i < m.rows(); ++i) {
          for (Index f = 0; f < f_count; ++f) {
            const double frac = f_count > 1 ? double(f) / double(f_count - 1) : 0.0;
            const double w = w_min * std::pow(w_max / w_min, frac);
            m(i, 2 * f) = float(amp * std::cos(w * double(i)));
            m(i, 2 * f + 1) = float(amp * std::sin(w * double(i)));
          }
        }
      }
    }
  }
  return in;
}

// Local-decay inputs as above, but with the F frequencies drawn per (seed, batch entry, head)
// log-uniformly in [2 pi / (4 n), 2 pi / 4] (sorted) instead of on the geometric grid, so each
// seed gives different Q and K with the same kind of decay, and each a different V. A random
// phase shared by q and k would not do: it rotates each (cos, sin) pair of both by the same
// angle, which leaves every logit, every coarse (mean) logit and hence every output unchanged.
inline Inputs drawn_local_decay_inputs(const Problem& p, double alpha, std::uint64_t seed) {
  Inputs in = make_inputs(p, seed);
  const Index f_count = p.d / 2;
  const double w_min = 2 * std::numbers::pi / (4.0 * double(p.n_k));
  const double w_max = 2 * std::numbers::pi / 4.0;
  const double amp = std::sqrt(alpha * std::sqrt(double(p.d)) / double(f_count));
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      Rng rng(seed, 0x10cd, std::uint64_t(b * p.heads + h));
      std::vector<double> w(static_cast<std::size_t>(f_count));
      for (double& x : w) x = w_min * std::pow(w_max / w_min, rng.uniform());
      std::sort(w.begin(), w.end());
      for (Tensor4* t : {&in.q, &in.k}) {
        auto m = t->head(b, h);
        for (Index i = 0; i < m.rows(); ++i) {
          for (Index f = 0; f < f_count; ++f) {
            m(i, 2 * f) = float(amp * std::cos(w[f] * double(i)));
            m(i, 2 * f + 1) = float(amp * std::sin(w[f] * double(i)));
          }
        }
      }
    }
  }
  return in;
}

// Dense softmax attention in double over per-pair logits: o_i = sum_j e^{s_ij} v_j / sum_j
// e^{s_ij}, where logit(i, j) = -inf excludes the pair; a row with nothing allowed is zero.
inline RowMatrixD dense_attention(Index n, ConstMatMap v,
                                  const std::function<double(Index, Index)>& logit) {
  RowMatrixD out = RowMatrixD::Zero(n, v.cols());
  std::vector<double> s(static_cast<std::size_t>(v.rows()));
  for (Index i = 0; i < n; ++i) {
    double m = kNegInfD;
    for (Index j = 0; j < v.rows(); ++j) {
      s[j] = logit(i, j);
      m = std::max(m, s[j]);
    }
    if (m == kNegInfD) continue;
    double z = 0;
    for (Index j = 0; j < v.rows(); ++j) {
      if (s[j] == kNegInfD) continue;
      const double w = std::exp(s[j] - m);
      z += w;
      out.row(i) += w * v.row(j).cast<double>();
    }
    out.row(i) /= z;
  }
  return out;
}

// Largest |out - ref| over one head.
inline double head_max_abs(const Tensor4& out, Index b, Index h, const RowMatrixD& ref) {
  return (out.head(b, h).cast<double>() - ref).cwiseAbs().maxCoeff();
}

// Runs `variant` and expects std::invalid_argument whose message names the variant, the
// parameter and the value.
inline void expect_rejected(const std::string& variant, const Json& params, const Problem& p,
                            const std::string& key, const std::string& value) {
  try {
    make_attention(variant, p, params);
    ADD_FAILURE() << variant << " accepted " << params.dump() << " for " << p.to_string();
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(variant), std::string::npos) << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
    EXPECT_NE(msg.find(value), std::string::npos) << msg;
  }
}

}  // namespace attnbench::testing
