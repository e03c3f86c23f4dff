// Measuring one configuration inside the child process: inputs, exact reference, setup, the
// first (cold) forward with its heap peak, error metrics, Google Benchmark timing.
// Time: the reference costs O(rows n_k (d + d_v)) per head; the rest is the variant's own cost.
#pragma once

#include <functional>
#include <string>

#include "attention/params.h"
#include "harness/spec.h"

namespace attnbench::harness {

// Measures `config` in this process and returns the record's measured fields (status,
// message, params, threads, time, memory, flops, gflops, error, diagnostics). `phase` is told
// each step's name as it starts (the parent names the phase a time-out hit).
Json measure_configuration(const Config& config,
                           const std::function<void(const std::string&)>& phase = {});

// The hidden child subcommand: runs measure_configuration on the JSON configuration and
// writes "phase NAME" lines and one "record {json}" line to file descriptor `fd`.
int run_child(const std::string& config_json, int fd);

// Tunes glibc malloc so that memory freed stays in the process (no trimming, no mmap for
// large blocks, one arena): repeated forwards then reuse touched pages and pay no page faults.
void keep_freed_memory_in_process();

}  // namespace attnbench::harness
