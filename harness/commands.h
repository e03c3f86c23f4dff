// The `list` and `forward` subcommands of attnbench.
#pragma once

#include <cstdint>
#include <string>

namespace attnbench::harness {

// what: "" (everything), "variants", "presets" or "workloads". Returns the exit code.
int list_command(const std::string& what, bool json);

struct ForwardOptions {
  std::string variant;  // NAME[:key=value,...]
  std::string q, k, v, out;
  bool causal = false;
  double scale = 0.0;  // 0 = 1/sqrt(d)
  int threads = 0;     // 0 = every core
  bool error = false;
  std::int64_t error_rows = 4096;  // all rows up to this n_q, a sample above
  std::uint64_t seed = 0;
};

// One variant on tensors from files; output written in the same format, shape and dtype.
// Throws SpecError for bad arguments or files (exit 2).
int forward_command(const ForwardOptions& options);

}  // namespace attnbench::harness
