// attnbench: lists variants, presets and workloads; runs experiment sweeps with one child
// process per configuration; runs one variant on tensors from files.
// Exit codes: 0 success, 1 failure while running, 2 bad spec, option or input file,
// 130 interrupted.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "attention/build_info.h"
#include "harness/commands.h"
#include "harness/measure.h"
#include "harness/presets.h"
#include "harness/runner.h"
#include "harness/spec.h"

namespace {

using namespace attnbench;
using namespace attnbench::harness;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) {
    if (!cur.empty()) out.push_back(cur);
  }
  return out;
}

// "4096", "4k", "1M" (powers of 1024).
Index parse_length(const std::string& s, const std::string& option) {
  std::size_t pos = 0;
  long long x = 0;
  try {
    x = std::stoll(s, &pos);
  } catch (const std::exception&) {
    throw SpecError(option + ": expected a positive integer (or 4k, 1M), got '" + s + "'");
  }
  const std::string unit = s.substr(pos);
  if (unit == "k" || unit == "K") {
    x *= 1024;
  } else if (unit == "m" || unit == "M") {
    x *= 1024 * 1024;
  } else if (!unit.empty()) {
    throw SpecError(option + ": expected a positive integer (or 4k, 1M), got '" + s + "'");
  }
  if (x < 1) throw SpecError(option + ": expected a positive integer, got '" + s + "'");
  return x;
}

std::vector<Index> parse_length_list(const std::vector<std::string>& values,
                                     const std::string& option) {
  std::vector<Index> out;
  for (const auto& v : values) {
    for (const auto& item : split(v, ',')) out.push_back(parse_length(item, option));
  }
  return out;
}

std::string utc_stamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

struct RunArgs {
  std::string spec;
  std::vector<std::string> variants, lengths, threads, seeds;
  int repetitions = 0;
  double timeout = 0;
  std::string memory_budget, out, shard;
  bool resume = false, dry_run = false;
};

int run_command(const RunArgs& a, const std::vector<std::string>& command) {
  Json spec;
  bool lenient = false;
  std::string source = a.spec;
  namespace fs = std::filesystem;
  if (fs::is_regular_file(a.spec)) {
    std::ifstream in(a.spec);
    std::stringstream buf;
    buf << in.rdbuf();
    spec = parse_spec_text(buf.str(), a.spec);
  } else if (Json preset = find_preset(a.spec); !preset.is_null()) {
    spec = preset;
    lenient = true;  // presets name variants other families may not have registered yet
    source = "preset " + a.spec;
  } else {
    std::string names;
    for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
    throw SpecError("run: '" + a.spec + "' is neither a spec file nor a preset; presets: " + names);
  }

  Overrides ov;
  for (const auto& v : a.variants) {
    // "full,flash" lists names; a value with parameters (":") keeps its commas.
    for (const auto& item : split(v, ';')) {
      if (item.find(':') == std::string::npos) {
        for (const auto& name : split(item, ',')) ov.variants.push_back(name);
      } else {
        ov.variants.push_back(item);
      }
    }
  }
  ov.lengths = parse_length_list(a.lengths, "--lengths");
  for (const auto& v : a.threads) {
    for (const auto& item : split(v, ',')) {
      try {
        std::size_t pos = 0;
        const int t = std::stoi(item, &pos);
        if (pos != item.size() || t < 0) throw std::invalid_argument(item);
        ov.threads.push_back(t);
      } catch (const std::exception&) {
        throw SpecError("--threads: expected non-negative integers (0 = every core), got '" + item +
                        "'");
      }
    }
  }
  for (const auto& s : a.seeds) {
    for (const auto& item : split(s, ',')) {
      try {
        ov.seeds.push_back(std::stoull(item));
      } catch (const std::exception&) {
        throw SpecError("--seeds: expected non-negative integers, got '" + item + "'");
      }
    }
  }
  if (a.repetitions > 0) ov.repetitions = a.repetitions;
  if (a.timeout > 0) ov.timeout = a.timeout;
  if (!a.memory_budget.empty()) ov.memory_budget = a.memory_budget;

  Experiment ex;
  try {
    ex = build_experiment(spec, source, lenient, ov);
  } catch (const SpecError& e) {
    throw SpecError(source + ": " + e.what());
  }
  for (const auto& w : ex.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (!a.shard.empty()) {
    const auto parts = split(a.shard, '/');
    int i = -1, n = 0;
    try {
      if (parts.size() == 2) {
        i = std::stoi(parts[0]);
        n = std::stoi(parts[1]);
      }
    } catch (const std::exception&) {
    }
    if (n < 1 || i < 0 || i >= n) {
      throw SpecError("--shard: expected I/N with 0 <= I < N, got '" + a.shard + "'");
    }
    apply_shard(ex, i, n);
  }
  if (a.dry_run) {
    for (const auto& c : ex.configs) std::printf("%s  %s\n", c.id.c_str(), c.label().c_str());
    std::fprintf(stderr, "%zu configurations\n", ex.configs.size());
    return 0;
  }
  RunOptions opts;
  opts.resume = a.resume;
  opts.command = command;
  if (a.out.empty()) {
    if (a.resume) throw SpecError("--resume: name the results file to continue with --out FILE");
    opts.out_path = "results/runs/" + ex.name + "-" + utc_stamp() +
                    (a.shard.empty() ? "" : "-shard" + split(a.shard, '/')[0]) + ".jsonl";
  } else {
    opts.out_path = a.out;
  }
  return run_experiment(ex, opts);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> command(argv, argv + argc);
  CLI::App app{
      "attnbench: time, memory and error of efficient attention variants against exact "
      "attention.\nSee harness/README.md for the spec format and examples."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(attnbench::build_info::kVersion));

  // list
  std::string list_what;
  bool list_json = false;
  auto* list =
      app.add_subcommand("list",
                         "List the variants (family, traits, parameters with defaults, ranges and "
                         "meanings), the presets and the workloads");
  list->add_option("what", list_what, "Only one section: variants, presets or workloads");
  list->add_flag("--json", list_json, "Machine-readable output");

  // run
  RunArgs ra;
  auto* run = app.add_subcommand(
      "run",
      "Run an experiment: a spec file (JSON) or a preset name; one child process per "
      "configuration; results appended to a JSONL file");
  run->add_option("spec", ra.spec, "Spec file (.json) or preset name (attnbench list presets)")
      ->required();
  run->add_option("--variants", ra.variants,
                  "Replace the spec's variants: NAME or NAME:key=value,... (several values, or "
                  "names separated by commas; a bare name the spec lists keeps its grid)")
      ->expected(1, -1);
  run->add_option("--lengths", ra.lengths, "Replace the lengths, e.g. 256,1024,4k")
      ->expected(1, -1);
  run->add_option("--threads", ra.threads, "Replace the thread counts, e.g. 1,2 (0 = every core)")
      ->expected(1, -1);
  run->add_option("--seeds", ra.seeds, "Replace the seeds, e.g. 0,1,2")->expected(1, -1);
  run->add_option("--repetitions", ra.repetitions, "Timed repetitions per configuration");
  run->add_option("--timeout", ra.timeout, "Time limit of one configuration in seconds");
  run->add_option("--memory-budget", ra.memory_budget,
                  "Skip configurations whose analytic memory exceeds this (8GiB, 512MiB, auto)");
  run->add_option("--out", ra.out,
                  "Results file (JSONL); default results/runs/NAME-TIMESTAMP.jsonl");
  run->add_flag("--resume", ra.resume, "Continue --out: skip the configurations it records");
  run->add_option("--shard", ra.shard,
                  "Run shard I of N (I/N, 0-based): whole length series are dealt round-robin");
  run->add_flag("--dry-run", ra.dry_run, "Print the configurations and exit");

  // forward
  ForwardOptions fo;
  auto* forward = app.add_subcommand(
      "forward",
      "Run one variant on Q, K, V from .npy or .safetensors files and write its output "
      "in the same format, shape and dtype");
  forward->add_option("--variant", fo.variant, "NAME or NAME:key=value,...")->required();
  forward->add_option("--q", fo.q, "Queries: (n, d), (heads, n, d) or (batch, heads, n, d)")
      ->required();
  forward->add_option("--k", fo.k, "Keys, same layout as --q")->required();
  forward->add_option("--v", fo.v, "Values, same layout as --k (last dimension d_v)")->required();
  forward->add_option("--out", fo.out, "Output file (.npy or .safetensors)")->required();
  forward->add_flag("--causal", fo.causal, "Causal mask (bottom-right aligned when n_q != n_k)");
  forward->add_option("--scale", fo.scale, "Logit scale (default 1/sqrt(d))");
  forward->add_option("--threads", fo.threads, "oneTBB threads (default: every core)");
  forward->add_option("--seed", fo.seed, "Seed of a randomized variant (its 'seed' parameter)");
  forward->add_flag("--error", fo.error,
                    "Print the error metrics against the exact double-precision reference (JSON)");
  forward->add_option("--error-rows", fo.error_rows,
                      "Compare all rows up to this n_q, a seeded sample of this many above");

  // The child side of `run` (hidden).
  int child_fd = 3;
  std::string child_config;
  auto* measure = app.add_subcommand("__measure", "");
  measure->group("");
  measure->add_option("--fd", child_fd);
  measure->add_option("config", child_config)->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    if (*list) return list_command(list_what, list_json);
    if (*run) return run_command(ra, command);
    if (*forward) return forward_command(fo);
    if (*measure) return run_child(child_config, child_fd);
  } catch (const SpecError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
