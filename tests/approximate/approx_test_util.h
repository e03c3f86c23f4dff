// Helpers shared by the approximate family's tests: inputs in the regimes these methods are
// meant for, error averaged over seeds, and checks of refusal messages.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/testing/test_util.h"

namespace attnbench::approx_testing {

// Q, K ~ N(0, sigma^2 I) and V ~ N(0, I); sigma = 1 is the suite's Gaussian workload. With
// scale 1/sqrt(d), |q'|^2 = sigma^2 sqrt(d) on average: the small-norm regime of kernel methods
// needs sigma^2 sqrt(d) <= about 1 (reference/variants.md §8.6).
inline testing::Inputs scaled_inputs(const Problem& p, std::uint64_t seed, double sigma) {
  testing::Inputs in = testing::make_inputs(p, seed);
  in.q = testing::random_tensor(p.batch, p.heads, p.n_q, p.d, seed * 7 + 1, sigma);
  in.k = testing::random_tensor(p.batch, p.heads, p.n_k, p.d, seed * 7 + 2, sigma);
  return in;
}

inline double max_abs(const Tensor4& t) {
  double m = 0;
  for (float x : t.storage()) m = std::max(m, double(std::fabs(x)));
  return m;
}

// Relative Frobenius error against exact softmax attention, one value per seed.
inline std::vector<double> errors_over_seeds(const std::string& variant, Json params,
                                             const Problem& p, int seeds, double sigma,
                                             bool vary_variant_seed = true) {
  std::vector<double> errors;
  for (int s = 0; s < seeds; ++s) {
    const auto in = scaled_inputs(p, 1000 + s, sigma);
    if (vary_variant_seed) params["seed"] = s;
    const Tensor4 out = testing::run_variant(variant, params, p, in);
    errors.push_back(testing::error_vs_reference(out, p, in).rel_fro);
  }
  return errors;
}

inline double mean(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  return s / double(x.size());
}

inline double std_error(const std::vector<double>& x) {
  const double m = mean(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return std::sqrt(s / double(x.size() - 1) / double(x.size()));
}

// Constructing `variant` must throw std::invalid_argument whose message contains every one of
// `needles` (the variant, the parameter, the value...).
inline void expect_refusal(const std::string& variant, const Problem& p, const Json& params,
                           const std::vector<std::string>& needles) {
  try {
    make_attention(variant, p, params);
    ADD_FAILURE() << variant << " accepted " << params.dump() << " on " << p.to_string();
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    for (const auto& needle : needles) {
      EXPECT_NE(msg.find(needle), std::string::npos) << "'" << needle << "' missing in: " << msg;
    }
  }
}

}  // namespace attnbench::approx_testing
