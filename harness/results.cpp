// The results JSONL file: context, appended records, reading for --resume.
#include "harness/results.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <CLI/Version.hpp>
#include <Eigen/Core>

#include <tbb/task_arena.h>
#include <tbb/version.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "attention/build_info.h"
#include "attention/parallel.h"
#include "attention/tensor.h"
#include "harness/heap.h"
#include "harness/spec.h"

#ifndef ATTNBENCH_BENCHMARK_VERSION
#define ATTNBENCH_BENCHMARK_VERSION "unknown"
#endif

namespace attnbench::harness {

namespace {

std::string cpu_field(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string v = line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "";
}

Json isa_flags() {
  static const std::vector<std::string> wanted = {
      "sse4_2",      "avx",      "avx2",     "fma",      "f16c",        "avx512f",
      "avx512dq",    "avx512cd", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
      "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"};
  std::istringstream flags(cpu_field("flags"));
  std::vector<std::string> have;
  std::string f;
  while (flags >> f) have.push_back(f);
  Json out = Json::array();
  for (const auto& w : wanted) {
    if (std::find(have.begin(), have.end(), w) != have.end()) out.push_back(w);
  }
  return out;
}

std::string iso_utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

double calibrate_gemm_gflops(int threads) {
  constexpr Index kN = 1024;
  threads = std::max(1, threads);
  std::vector<RowMatrix> a(threads), b(threads), c(threads);
  for (int t = 0; t < threads; ++t) {
    a[t] = RowMatrix::Random(kN, kN);
    b[t] = RowMatrix::Random(kN, kN);
    c[t] = RowMatrix::Zero(kN, kN);
  }
  tbb::task_arena arena(threads);
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {  // the first is a warm-up of caches and pages
    const auto t0 = std::chrono::steady_clock::now();
    arena.execute([&] {
      attnbench::parallel_for(
          0, threads, [&](int t) { c[t].noalias() = a[t] * b[t]; }, tbb::static_partitioner());
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0) best = std::max(best, 2.0 * double(kN) * kN * kN * threads / s * 1e-9);
  }
  return best;
}

Json make_context(const Json& resolved_spec, const std::vector<int>& gemm_threads,
                  bool calibrate_gemm, const std::vector<std::string>& command) {
  const std::string cpu = cpu_field("model name");
  const int cores = hardware_cores();
  const double memory = physical_memory_bytes();
  Json gemm = Json::object();
  if (calibrate_gemm) {
    for (int t : gemm_threads) gemm[std::to_string(t)] = calibrate_gemm_gflops(t);
  }
  std::ostringstream machine;
  machine << cpu << "|" << cores << "|" << static_cast<long long>(memory);
  return {
      {"type", "context"},
      {"schema_version", kSchemaVersion},
      {"attnbench_version", build_info::kVersion},
      {"git_commit", build_info::kGitCommit},
      {"compiler", build_info::kCompiler},
      {"build_type", build_info::kBuildType},
      {"compile_flags", build_info::kCompileFlags},
      {"sanitizers", build_info::kSanitizers},
      {"cpu_model", cpu},
      {"isa", isa_flags()},
      {"cores", cores},
      {"memory_bytes", memory},
      {"machine_id", stable_hash(machine.str()).substr(0, 12)},
      {"library_versions",
       {{"eigen", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                      "." + std::to_string(EIGEN_MINOR_VERSION)},
        {"onetbb", TBB_VERSION_STRING},
        {"benchmark", ATTNBENCH_BENCHMARK_VERSION},
        {"nlohmann_json", std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." +
                              std::to_string(NLOHMANN_JSON_VERSION_MINOR) + "." +
                              std::to_string(NLOHMANN_JSON_VERSION_PATCH)},
        {"cli11", CLI11_VERSION}}},
      {"malloc_accounting", heap::accounting_enabled()},
      {"gemm_gflops", gemm},
      {"spec", resolved_spec},
      {"command", command},
      {"start_time", iso_utc_now()},
  };
}

ExistingRun read_results(const std::string& path) {
  ExistingRun run;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open for reading");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t pos = 0;
  int line_no = 0;
  while (pos < content.size()) {
    ++line_no;
    const std::size_t nl = content.find('\n', pos);
    const bool complete = nl != std::string::npos;
    const std::string line = content.substr(pos, complete ? nl - pos : std::string::npos);
    const std::size_t next = complete ? nl + 1 : content.size();
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool last = next >= content.size();
    if (!complete || j.is_discarded() || !j.is_object()) {
      if (last) {
        run.warnings.push_back(path + ": line " + std::to_string(line_no) +
                               " is cut short (an interrupted write); it is dropped and that "
                               "configuration runs again");
        break;
      }
      throw std::runtime_error(path + ": line " + std::to_string(line_no) +
                               " is not a JSON object; the file is not an attnbench results file "
                               "or was edited");
    }
    if (line_no == 1) {
      if (j.value("type", "") != "context") {
        throw std::runtime_error(path + ": line 1 is not a run context");
      }
      run.context = j;
    } else if (j.value("type", "") == "result" && j.contains("config_id")) {
      run.config_ids.insert(j["config_id"].get<std::string>());
      run.records.push_back(std::move(j));
    }
    run.valid_bytes = next;
    pos = next;
  }
  return run;
}

ResultsWriter::ResultsWriter(const std::string& path, std::size_t truncate_to, bool existing)
    : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error(path + ": cannot open for writing: " + std::strerror(errno));
  if (existing) {
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && std::size_t(st.st_size) > truncate_to) {
      if (::ftruncate(fd_, off_t(truncate_to)) != 0) {
        throw std::runtime_error(path +
                                 ": cannot drop the cut-short last line: " + std::strerror(errno));
      }
    }
  }
}

ResultsWriter::~ResultsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void ResultsWriter::append(const Json& line) {
  const std::string s = line.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
  const ssize_t w = ::write(fd_, s.data(), s.size());
  if (w != ssize_t(s.size())) {
    throw std::runtime_error(
        path_ + ": write failed: " + (w < 0 ? std::string(std::strerror(errno)) : "short write"));
  }
  ::fsync(fd_);
}

}  // namespace attnbench::harness
