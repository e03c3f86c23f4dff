// The sweep: one child process per configuration (fork + exec of this program), a time limit
// per child (its process group is killed), statuses for crashes, out-of-memory kills and
// time-outs, budget skips, --resume, and a progress line on stderr.
#pragma once

#include <string>
#include <vector>

#include "harness/spec.h"

namespace attnbench::harness {

struct RunOptions {
  std::string out_path;
  bool resume = false;
  std::vector<std::string> command;  // recorded in the context
};

// Runs `experiment`, appending to options.out_path. Returns the exit code: 0 when the sweep
// finished (whatever the configurations' statuses), 130 when interrupted (SIGINT / SIGTERM).
// Throws SpecError for an output file that exists without --resume.
int run_experiment(const Experiment& experiment, const RunOptions& options);

// The outcome of one child process.
struct ChildOutcome {
  Json record;  // the measured fields (status, message, time, memory, ...)
  bool interrupted = false;
};

// Runs `config` in a child process of `executable` (hidden subcommand), with its time limit.
ChildOutcome run_in_child(const std::string& executable, const Config& config);

// Path of the running program (/proc/self/exe).
std::string self_executable();

}  // namespace attnbench::harness
