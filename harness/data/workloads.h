// Workloads: seeded input generators with documented parameters (reference/variants.md §8).
// Random Gaussian Q/K makes attention nearly uniform and every comparison misleading, so the
// suite ships generators whose attention statistics span peaked to flat.
//
// Every generated head (b, h) is drawn from its own stream of (seed, b, h), so it does not
// depend on how many heads or batch entries the problem has, and generation runs in parallel
// over heads (oneTBB) with bit-identical results at any thread count.
//
// Workloads: gaussian, clustered, local_decay, low_rank, sink, small_norm (generated) and files
// (loaded). Common parameters, where they make sense:
//   shared_qk  K = Q exactly (for Reformer-style shared-QK attention); needs n_q = n_k.
//   values     V ~ N(0, I) ("gaussian"), a random walk along the sequence ("random_walk"), or
//              V = K·W for a Gaussian W ("key_linear"); structured V is rescaled to unit RMS.
//
// The `files` workload is special-cased: its parameters are a JSON object
//   {"q": "Q.npy", "k": "K.npy", "v": "V.npy"}
// of tensor-file paths (anything read_tensor_file accepts, e.g. "qkv.safetensors:q"), all three
// required. Its WorkloadInfo lists no ParamSpec (ParamSpec has no string type); its params_doc
// gives the shape. resolve_workload_params checks the keys and that the values are strings;
// files_problem() reads the files' geometry; generate_workload checks the files against the
// problem and ignores the seed.
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

// The geometry at which each workload's documented statistics hold: non-causal, n_q = n_k =
// kStatsN, d = d_v = kStatsD, default parameters. (Tests measure them at batch 1, 4 heads.)
inline constexpr Index kStatsN = 1024;
inline constexpr Index kStatsD = 64;

// A documented range of one exact-attention statistic, from the theory of reference/variants.md
// §8 (the README shows the derivation). `stat` is one of
//   entropy_ratio  mean over rows of H_i / log n
//   n_eff_ratio    mean over rows of n_eff,i / n, n_eff = 1 / sum_j p_ij^2
//   max_weight     mean over rows of max_j p_ij
//   sink_weight    mean over rows of p_i0 (the weight on key 0)
struct StatRange {
  std::string stat;
  double theory = 0;  // the predicted value
  double lo = 0, hi = 0;
};

struct WorkloadInfo {
  std::string name;
  std::string summary;  // one paragraph: what it models and which variants it favours
  std::vector<ParamSpec> params;
  std::string expected_stats;  // the exact-attention statistics it produces (documented range)
  // Added fields:
  std::vector<StatRange> stat_ranges;  // machine-readable form of expected_stats (may be empty)
  std::string params_doc;              // for special-cased parameters (files); else empty
};

// Every workload, in listing order.
const std::vector<WorkloadInfo>& workload_catalog();

// The catalog entry of `name`; std::invalid_argument listing the workloads if unknown.
const WorkloadInfo& workload_info(const std::string& name);

// {name, summary, params (ParamSpec::describe each), expected_stats, stat_ranges, params_doc},
// for `attnbench list --json`.
Json describe_workload(const WorkloadInfo& info);

// Validates parameters (unknown keys, ranges): std::invalid_argument naming the workload.
ParamSet resolve_workload_params(const std::string& name, const Json& params);

// Seeded inputs for `problem` (every head and batch entry drawn from (seed, b, h)).
// Shape-dependent parameter errors (e.g. shared_qk with n_q != n_k, rank > d) throw
// std::invalid_argument naming the workload, the parameter, the value and what was expected.
AttentionInputs generate_workload(const std::string& name, const ParamSet& params,
                                  const Problem& problem, std::uint64_t seed);

// For the files workload: the geometry of the three files (batch, heads, n_q, n_k, d, d_v;
// causal, key_padding and scale left at their defaults). Throws std::runtime_error naming the
// file on a bad or inconsistent file.
Problem files_problem(const ParamSet& params);

}  // namespace attnbench
