// The results JSONL file (results/README.md, schema version 1): the run context, and records
// appended one write() per line, flushed and synced as each configuration ends.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "attention/params.h"

namespace attnbench::harness {

inline constexpr int kSchemaVersion = 1;

// Facts about the machine and the build, the calibrated GEMM rates and the resolved spec.
Json make_context(const Json& resolved_spec, const std::vector<int>& gemm_threads,
                  bool calibrate_gemm, const std::vector<std::string>& command);

// Eigen SGEMM rate (GFLOP/s) on a large square product with `threads` threads, each running
// its own product (Eigen itself is single-threaded here: oneTBB owns the parallelism).
double calibrate_gemm_gflops(int threads);

struct ExistingRun {
  Json context;                      // null when the file is empty
  std::set<std::string> config_ids;  // records already written
  std::vector<Json> records;
  std::size_t valid_bytes = 0;        // length of the complete, parseable prefix
  std::vector<std::string> warnings;  // e.g. a truncated last line
};

// Reads an existing results file for --resume. A last line that is cut short (no newline, or
// not JSON) is reported in `warnings` and excluded from valid_bytes; a bad line elsewhere is an
// error (std::runtime_error naming the line).
ExistingRun read_results(const std::string& path);

class ResultsWriter {
 public:
  // Opens `path` for appending; with `truncate_to` set, cuts a partial last line first.
  ResultsWriter(const std::string& path, std::size_t truncate_to, bool existing);
  ~ResultsWriter();
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;

  // Writes one line with a single write() (a reader never sees half a record from a writer
  // killed between lines), then fsync.
  void append(const Json& line);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace attnbench::harness
