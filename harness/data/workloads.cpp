// Placeholder until the workload generators land: only `gaussian` exists.
#include "harness/data/workloads.h"

#include <stdexcept>

#include "attention/random.h"

namespace attnbench {

const std::vector<WorkloadInfo>& workload_catalog() {
  static const std::vector<WorkloadInfo> catalog = {
      {"gaussian",
       "Gaussian Q, K, V; Q scaled by the temperature.",
       {ParamSpec::real("temperature", 1.0, 0.0, 1e6, "logit standard deviation")},
       "temperature 1: n_eff/n ~ 0.38"}};
  return catalog;
}

ParamSet resolve_workload_params(const std::string& name, const Json& params) {
  for (const auto& w : workload_catalog()) {
    if (w.name == name) return resolve_params("workload '" + name + "'", w.params, params);
  }
  throw std::invalid_argument("unknown workload '" + name + "'");
}

AttentionInputs generate_workload(const std::string& name, const ParamSet& params, const Problem& p,
                                  std::uint64_t seed) {
  if (name != "gaussian") throw std::invalid_argument("unknown workload '" + name + "'");
  AttentionInputs in{Tensor4(p.batch, p.heads, p.n_q, p.d), Tensor4(p.batch, p.heads, p.n_k, p.d),
                     Tensor4(p.batch, p.heads, p.n_k, p.d_v), KeyMask()};
  const double t = params.get_double("temperature");
  Rng rng(seed, 1);
  for (float& x : in.q.storage()) x = float(t * rng.normal());
  for (float& x : in.k.storage()) x = float(rng.normal());
  for (float& x : in.v.storage()) x = float(rng.normal());
  return in;
}

}  // namespace attnbench
