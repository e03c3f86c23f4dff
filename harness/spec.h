// Experiment specs: JSON with variants and parameter grids, lengths, shapes, workloads, seeds,
// threads, timing, budgets and error settings; validated strictly (every error names its
// field) and expanded into the Cartesian product of configurations, lengths innermost.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention/params.h"
#include "attention/problem.h"

namespace attnbench::harness {

// A bad spec, override or command-line value: the program prints it and exits with code 2.
struct SpecError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TimingOptions {
  int repetitions = 5;
  double min_time = 0.1;      // seconds per repetition (Google Benchmark picks the iterations)
  double warmup_time = 0.05;  // seconds of untimed forwards before the repetitions
};

struct ErrorOptions {
  bool enabled = true;
  Index max_all_rows = 4096;  // every query row up to this n_q
  Index sample_rows = 512;    // a seeded sample of this many rows above it
};

// One measured configuration.
struct Config {
  std::string variant;
  std::string family;
  Json spec_params = Json::object();  // as written in the spec (one point of the grid)
  Json params = Json::object();       // every declared parameter, defaults filled (null = auto)
  Problem problem;
  double padding = 0.0;  // key padding: fraction of keys padded in the last batch entry
  std::string workload;
  Json workload_params = Json::object();  // every declared parameter, defaults filled
  std::uint64_t seed = 0;
  int threads = 1;  // oneTBB threads (a spec's 0 is resolved to the core count)
  TimingOptions timing;
  ErrorOptions error;
  double timeout = 600.0;      // seconds, whole child process
  double memory_budget = 0.0;  // bytes; analytic memory + inputs/outputs above it: skipped
  std::string id;              // config_id: hash of identity()
  std::string series_id;       // hash of identity() without the lengths

  // What makes two configurations the same measurement (the --resume key).
  Json identity() const;
  // The child's instructions, and back.
  Json to_json() const;
  static Config from_json(const Json& j);
  // Short text for the progress line.
  std::string label() const;
  // The key-padding mask's lengths: batch entry b keeps its first kept_keys(b) keys.
  Index kept_keys(Index b) const;
};

struct Experiment {
  std::string name;
  Json resolved = Json::object();  // the resolved spec, recorded in the run context
  std::vector<Config> configs;
  std::vector<std::string> warnings;  // presets: variants or workloads skipped
  bool calibrate_gemm = true;
  bool skip_longer_after_failure = true;
};

// Command-line overrides of a spec's fields.
struct Overrides {
  std::vector<std::string> variants;  // NAME or NAME:key=value,...; a bare name the spec already
                                      // lists keeps the spec's grid for it
  std::vector<Index> lengths;
  std::vector<int> threads;
  std::vector<std::uint64_t> seeds;
  std::optional<int> repetitions;
  std::optional<double> timeout;
  std::optional<std::string> memory_budget;
};

// Parses JSON text; malformed text throws SpecError with the line and column.
Json parse_spec_text(const std::string& text, const std::string& source);

// Validates `spec` (after applying `overrides`) and expands it. A preset (`lenient`) skips
// variants and workloads that are not registered, or whose parameters they reject, with a
// warning; a user's spec treats them as errors. Throws SpecError naming the field.
Experiment build_experiment(Json spec, const std::string& source, bool lenient,
                            const Overrides& overrides);

// "8GiB", "512 MiB", "1.5e9", 1000000, "auto" (half the physical memory).
double parse_bytes(const Json& value, const std::string& field);
std::string format_bytes(double bytes);

// 64-bit FNV-1a of `text`, as 16 hex digits.
std::string stable_hash(const std::string& text);

// Keeps configurations index % count == index_of_shard.
void apply_shard(Experiment& experiment, int shard, int count);

int hardware_cores();
double physical_memory_bytes();

}  // namespace attnbench::harness
