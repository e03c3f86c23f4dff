// Workloads: seeded input generators with documented parameters (reference/variants.md §8).
// Random Gaussian Q/K makes attention nearly uniform and every comparison misleading, so the
// suite ships generators whose attention statistics span peaked to flat.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attention/params.h"
#include "attention/problem.h"
#include "attention/tensor.h"

namespace attnbench {

struct AttentionInputs {
  Tensor4 q;     // [batch, heads, n_q, d]
  Tensor4 k;     // [batch, heads, n_k, d]
  Tensor4 v;     // [batch, heads, n_k, d_v]
  KeyMask mask;  // empty unless the problem has key_padding (the harness fills it)
};

struct WorkloadInfo {
  std::string name;
  std::string summary;  // one paragraph: what it models and which variants it favours
  std::vector<ParamSpec> params;
  std::string expected_stats;  // the exact-attention statistics it produces (documented range)
};

// Every workload, in listing order.
const std::vector<WorkloadInfo>& workload_catalog();

// Validates parameters (unknown keys, ranges): std::invalid_argument naming the workload.
ParamSet resolve_workload_params(const std::string& name, const Json& params);

// Seeded inputs for `problem` (every head and batch entry drawn from (seed, b, h)).
AttentionInputs generate_workload(const std::string& name, const ParamSet& params,
                                  const Problem& problem, std::uint64_t seed);

}  // namespace attnbench
