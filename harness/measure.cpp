// Measuring one configuration inside the child process (see DESIGN "Measurement protocol").
#include "harness/measure.h"

#include <benchmark/benchmark.h>
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <new>
#include <numeric>

#include "attention/metrics.h"
#include "attention/reference.h"
#include "attention/registry.h"
#include "harness/data/workloads.h"
#include "harness/heap.h"

namespace attnbench::harness {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Collects every repetition's run; the statistics are computed here from them.
class CollectingReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      if (r.run_type == Run::RT_Iteration) runs_.push_back(r);
    }
  }
  std::vector<Run> runs_;
};

struct Failure {
  std::string status;
  std::string message;
};

Json timing_json(const std::vector<double>& reps, std::int64_t iterations, double cold,
                 double setup) {
  std::vector<double> sorted = reps;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  const double mean = std::accumulate(reps.begin(), reps.end(), 0.0) / double(n);
  double var = 0;
  for (double x : reps) var += (x - mean) * (x - mean);
  const double stddev = n > 1 ? std::sqrt(var / double(n - 1)) : 0.0;
  return {{"median", median},
          {"mean", mean},
          {"stddev", stddev},
          {"min", sorted.front()},
          {"cv", mean > 0 ? stddev / mean : 0.0},
          {"repetitions", reps},
          {"iterations", iterations},
          {"cold", cold},
          {"setup", setup}};
}

Index count_nonfinite(const Tensor4& t) {
  Index n = 0;
  for (float x : t.storage()) n += std::isfinite(x) ? 0 : 1;
  return n;
}

double peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) * 1024.0;  // Linux reports KiB
}

}  // namespace

void keep_freed_memory_in_process() {
  // mmap'd blocks go back to the kernel on free and fault again on reuse: serve every block
  // from the heap instead, never trim it (-1 converts to SIZE_MAX), and keep one arena so that
  // a block freed by one thread is reused by the next allocation of any thread.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, -1);
  mallopt(M_ARENA_MAX, 1);
}

Json measure_configuration(const Config& c,
                           const std::function<void(const std::string&)>& phase_fn) {
  auto phase = [&](const char* name) {
    if (phase_fn) phase_fn(name);
  };
  Json rec = Json::object();
  const VariantInfo& info = Registry::instance().get(c.variant);
  const Problem& p = c.problem;
  rec["status"] = "ok";
  rec["params"] = c.params;
  rec["threads"] = c.threads;
  Json memory = {{"setup_peak", nullptr},
                 {"forward_peak", nullptr},
                 {"peak_rss", nullptr},
                 {"analytic", nullptr},
                 {"counted_at_malloc", heap::accounting_enabled()}};

  auto finish = [&](const Failure& f) {
    rec["status"] = f.status;
    if (!f.message.empty()) rec["message"] = f.message;
    memory["peak_rss"] = peak_rss_bytes();
    if (!heap::accounting_enabled()) {
      memory["setup_peak"] = nullptr;
      memory["forward_peak"] = nullptr;
    }
    rec["memory"] = memory;
    return rec;
  };

  try {
    // 1. Inputs (seeded), key-padding mask, outputs.
    phase("inputs");
    const ParamSet wparams = resolve_workload_params(c.workload, c.workload_params);
    AttentionInputs in = generate_workload(c.workload, wparams, p, c.seed);
    if (p.key_padding) {
      std::vector<Index> lengths;
      for (Index b = 0; b < p.batch; ++b) lengths.push_back(c.kept_keys(b));
      in.mask = KeyMask::from_lengths(p.n_k, lengths);
    }
    Tensor4 out(p.batch, p.heads, p.n_q, p.d_v);
    memory["inputs"] =
        double(in.q.size() + in.k.size() + in.v.size() + out.size()) * double(sizeof(float));

    // 2. The exact reference, on all cores before the variant exists (its rows stay allocated
    //    and so fall inside the baseline).
    std::vector<HeadReference> ref;
    std::vector<Index> rows;
    if (c.error.enabled) {
      phase("reference");
      rows = select_rows(p.n_q, c.error.max_all_rows, c.error.sample_rows, c.seed);
      ref = reference_attention(in.q, in.k, in.v, in.mask, p, info.traits.reference, rows);
    }

    // 3. Setup, under the thread setting the forward runs with.
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism,
                              std::size_t(std::max(1, c.threads)));
    tbb::task_arena arena(std::max(1, c.threads));
    arena.initialize();
    rec["threads"] = std::min<int>(
        arena.max_concurrency(),
        int(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism)));

    phase("setup");
    const std::int64_t baseline = heap::live_bytes();
    heap::reset_peak();
    std::unique_ptr<Attention> attn;
    double setup_time = 0;
    try {
      const auto t0 = Clock::now();
      arena.execute([&] { attn = make_attention(c.variant, p, c.params); });
      setup_time = seconds_since(t0);
    } catch (const std::invalid_argument& e) {
      return finish({"unsupported", e.what()});
    }
    memory["setup_peak"] = double(heap::peak_bytes() - baseline);
    rec["params"] = attn->resolved_params();
    const Cost cost = info.cost ? info.cost(p, attn->params(), int(rec["threads"])) : Cost{0, 0};
    memory["analytic"] = cost.memory_bytes;
    rec["flops"] = cost.flops;

    // 4. The first forward: its output is the one compared; its heap peak is the figure.
    phase("forward");
    const std::int64_t before_forward = heap::live_bytes();
    heap::reset_peak();
    const auto t0 = Clock::now();
    arena.execute([&] { attn->forward(in.q, in.k, in.v, out, in.mask); });
    const double cold = seconds_since(t0);
    memory["forward_peak"] = double(heap::peak_bytes() - baseline);
    memory["forward_growth"] = double(heap::peak_bytes() - before_forward);

    const Index nonfinite = count_nonfinite(out);
    if (c.error.enabled) {
      phase("error");
      ErrorMetrics m = compute_error(out, in.v, ref);
      Json e = m.to_json();
      e["reference"] = to_string(info.traits.reference);
      rec["error"] = e;
    }
    rec["diagnostics"] = attn->diagnostics();
    if (nonfinite > 0) {
      rec["time"] = {{"cold", cold}, {"setup", setup_time}};
      return finish(
          {"error", "output has " + std::to_string(nonfinite) + " non-finite values (NaN or Inf)"});
    }

    // 5. Steady-state timing with Google Benchmark.
    phase("timing");
    std::string bench_error;
    // What each timed forward allocates (ideally nothing: allocations in forward pay page
    // faults), read around the call itself so Google Benchmark's own bookkeeping is left out.
    // Two relaxed atomic loads and a store per iteration: nanoseconds against a forward.
    std::int64_t forwards = 0;
    std::uint64_t forward_calls = 0;
    std::int64_t forward_growth = 0;
    benchmark::ClearRegisteredBenchmarks();
    benchmark::RegisterBenchmark(c.variant.c_str(),
                                 [&](benchmark::State& state) {
                                   for (auto _ : state) {
                                     const std::uint64_t calls0 = heap::allocation_count();
                                     const std::int64_t live0 = heap::live_bytes();
                                     heap::reset_peak();
                                     try {
                                       attn->forward(in.q, in.k, in.v, out, in.mask);
                                     } catch (const std::exception& e) {
                                       bench_error = e.what();
                                       state.SkipWithError("forward threw");
                                       break;
                                     }
                                     forward_calls += heap::allocation_count() - calls0;
                                     forward_growth =
                                         std::max(forward_growth, heap::peak_bytes() - live0);
                                     ++forwards;
                                   }
                                 })
        ->Repetitions(c.timing.repetitions)
        ->MinTime(c.timing.min_time)
        ->MinWarmUpTime(c.timing.warmup_time)
        ->UseRealTime()
        ->Unit(benchmark::kSecond);
    CollectingReporter reporter;
    arena.execute([&] { benchmark::RunSpecifiedBenchmarks(&reporter); });
    benchmark::ClearRegisteredBenchmarks();
    if (!bench_error.empty())
      return finish({"error", "forward failed while timed: " + bench_error});
    std::vector<double> reps;
    std::int64_t iterations = 0;
    for (const auto& r : reporter.runs_) {
      if (r.error_occurred || r.iterations == 0) continue;
      reps.push_back(r.real_accumulated_time / double(r.iterations));
      iterations = std::max<std::int64_t>(iterations, r.iterations);
    }
    if (reps.empty()) return finish({"error", "Google Benchmark reported no repetition"});
    rec["time"] = timing_json(reps, iterations, cold, setup_time);
    const double median = rec["time"]["median"].get<double>();
    rec["gflops"] = median > 0 ? cost.flops / median * 1e-9 : 0.0;
    memory["steady_allocations"] = forwards > 0 ? double(forward_calls) / double(forwards) : 0.0;
    memory["steady_growth"] = double(forward_growth);
    memory["timed_forwards"] = forwards;
    return finish({"ok", ""});
  } catch (const std::bad_alloc& e) {
    return finish({"oom", std::string("std::bad_alloc: ") + e.what()});
  } catch (const std::exception& e) {
    return finish({"error", e.what()});
  }
}

int run_child(const std::string& config_json, int fd) {
  auto write_line = [fd](const std::string& line) {
    const std::string s = line + "\n";
    std::size_t off = 0;
    while (off < s.size()) {
      const ssize_t w = ::write(fd, s.data() + off, s.size() - off);
      if (w <= 0) return;
      off += std::size_t(w);
    }
  };
  keep_freed_memory_in_process();
  Config c = Config::from_json(Json::parse(config_json));
  Json rec =
      measure_configuration(c, [&](const std::string& name) { write_line("phase " + name); });
  write_line("record " + rec.dump(-1, ' ', false, Json::error_handler_t::replace));
  return 0;
}

}  // namespace attnbench::harness
