// variant_bench: a Google Benchmark program over any registered variants and lengths.
//
//   variant_bench --variant flash --variant 'window:width=256' --n 4096,16384 --heads 8 --d 64
//                 [--causal] [--threads 2] [--gemm] [--benchmark_repetitions=5 ...]
//
// Each (variant, n) is one benchmark: inputs and the variant are built once, outside the timed
// region, and one untimed forward touches every workspace before timing starts (first-touch page
// faults would otherwise dominate). Counters: GFLOP/s from the variant's analytic cost model and
// ns per computed score. `--gemm` adds Eigen's SGEMM on a large square product with the same
// thread count, the rate exact attention is judged against. At the end a summary prints, per
// variant, the fitted log-log slope of time against n, and the time ratio of every variant to
// the first one at each n — compare speeds as ratios measured in the same run.
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attention/parallel.h"
#include "attention/random.h"
#include "attention/registry.h"

namespace attnbench {
namespace {

struct Options {
  std::vector<std::string> variants;
  std::vector<Index> lengths;
  Index batch = 1, heads = 8, d = 64, d_v = 0;
  bool causal = false;
  int threads = 0;
  bool gemm = false;
  Index gemm_n = 2048;
  double temperature = 1.0;
  std::uint64_t seed = 1;
  double memory_budget_gib = 16.0;
};

// The one configuration alive at a time: building every configuration up front would hold all
// their inputs and workspaces at once.
struct Live {
  std::string key;
  Problem problem;
  Tensor4 q, k, v, out;
  std::unique_ptr<Attention> attention;
  double flops = 0;
};

std::optional<Live> g_live;
std::unique_ptr<tbb::task_arena> g_arena;

Tensor4 gaussian(Index b, Index h, Index n, Index d, std::uint64_t seed, double stddev) {
  Tensor4 t(b, h, n, d);
  Rng rng(seed);
  for (float& x : t.storage()) x = float(stddev * rng.normal());
  return t;
}

void run_variant(benchmark::State& state, const Options& opt, const VariantSpec& spec, Index n) {
  const std::string key = spec.to_string() + "/" + std::to_string(n);
  if (!g_live || g_live->key != key) {
    g_live.reset();  // free the previous configuration first
    Live live;
    live.key = key;
    Problem& p = live.problem;
    p.batch = opt.batch;
    p.heads = opt.heads;
    p.n_q = p.n_k = n;
    p.d = opt.d;
    p.d_v = opt.d_v > 0 ? opt.d_v : opt.d;
    p.causal = opt.causal;
    try {
      const VariantInfo& info = Registry::instance().get(spec.name);
      const ParamSet params = resolve_variant_params(spec.name, spec.params);
      const Cost cost = info.cost(p, params, int(g_arena->max_concurrency()));
      if (cost.memory_bytes > opt.memory_budget_gib * 1073741824.0) {
        state.SkipWithError(("analytic memory " + std::to_string(cost.memory_bytes / 1048576.0) +
                             " MiB exceeds --memory-budget")
                                .c_str());
        return;
      }
      live.flops = cost.flops;
      live.q = gaussian(p.batch, p.heads, n, p.d, opt.seed * 3, opt.temperature);
      live.k = gaussian(p.batch, p.heads, n, p.d, opt.seed * 3 + 1, 1.0);
      live.v = gaussian(p.batch, p.heads, n, p.d_v, opt.seed * 3 + 2, 1.0);
      live.out = Tensor4(p.batch, p.heads, n, p.d_v);
      g_arena->execute([&] {
        live.attention = make_attention(spec, p);
        live.attention->forward(live.q, live.k, live.v, live.out);  // untimed: touch workspaces
      });
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
    g_live = std::move(live);
  }
  Live& live = *g_live;
  for (auto _ : state) {
    g_arena->execute([&] { live.attention->forward(live.q, live.k, live.v, live.out); });
    benchmark::ClobberMemory();
  }
  const double scores = live.flops / (2.0 * double(live.problem.d + live.problem.d_v));
  state.counters["GFLOPS"] =
      benchmark::Counter(live.flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["ns_per_score"] = benchmark::Counter(
      scores * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["n"] = double(n);
}

void run_gemm(benchmark::State& state, Index n) {
  RowMatrix a = RowMatrix::Random(n, n), b = RowMatrix::Random(n, n), c(n, n);
  c.setZero();
  for (auto _ : state) {
    g_arena->execute([&] {
      // Eigen parallelises a GEMM only with OpenMP; here the product is split by row blocks
      // over the oneTBB arena so that the rate is measured with the same threads as attention.
      const int parts = g_arena->max_concurrency();
      const Index rows = (n + parts - 1) / parts;
      attnbench::parallel_for(0, parts, [&](int t) {
        const Index r0 = t * rows, r = std::min(rows, n - r0);
        if (r > 0) c.middleRows(r0, r).noalias() = a.middleRows(r0, r) * b;
      });
    });
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * double(n) * double(n) * double(n) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// Collects every run for the summary while printing as usual.
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  struct Entry {
    double seconds;
    double gflops;
    double ns_per_score;
  };
  std::map<std::string, Entry> entries;  // by run name (median aggregate when repeated)

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const bool aggregate = run.run_type == Run::RT_Aggregate;
      if (aggregate && run.aggregate_name != "median") continue;
      // With repetitions, the median aggregate arrives after the repetitions and replaces them.
      const std::string name = run.run_name.function_name;
      const double seconds = run.GetAdjustedRealTime() * time_scale(run.time_unit);
      auto it = run.counters.find("GFLOPS");
      auto ns = run.counters.find("ns_per_score");
      entries[name] = {seconds, it == run.counters.end() ? 0.0 : double(it->second),
                       ns == run.counters.end() ? 0.0 : double(ns->second)};
    }
    ConsoleReporter::ReportRuns(runs);
  }

 private:
  static double time_scale(benchmark::TimeUnit unit) {
    switch (unit) {
      case benchmark::kNanosecond:
        return 1e-9;
      case benchmark::kMicrosecond:
        return 1e-6;
      case benchmark::kMillisecond:
        return 1e-3;
      default:
        return 1.0;
    }
  }
};

std::string bench_name(const VariantSpec& spec, Index n) {
  return spec.to_string() + "/n:" + std::to_string(n);
}

void print_summary(const Options& opt, const std::vector<VariantSpec>& specs,
                   const CollectingReporter& rep) {
  std::printf("\nSummary (%d thread%s, heads=%lld, d=%lld%s)\n", g_arena->max_concurrency(),
              g_arena->max_concurrency() == 1 ? "" : "s", (long long)opt.heads, (long long)opt.d,
              opt.causal ? ", causal" : "");
  double gemm_rate = 0;
  if (opt.gemm) {
    auto it = rep.entries.find("sgemm/n:" + std::to_string(opt.gemm_n));
    if (it != rep.entries.end()) {
      gemm_rate = it->second.gflops;
      std::printf("  Eigen SGEMM %lld^3: %.1f GFLOP/s\n", (long long)opt.gemm_n, gemm_rate);
    }
  }
  for (const auto& spec : specs) {
    std::vector<double> xs, ys;
    std::printf("  %s\n", spec.to_string().c_str());
    for (Index n : opt.lengths) {
      auto it = rep.entries.find(bench_name(spec, n));
      if (it == rep.entries.end()) continue;
      xs.push_back(std::log(double(n)));
      ys.push_back(std::log(it->second.seconds));
      std::printf("    n=%-8lld %12.3f ms %9.1f GFLOP/s %7.3f ns/score", (long long)n,
                  it->second.seconds * 1e3, it->second.gflops, it->second.ns_per_score);
      if (gemm_rate > 0) std::printf("  %5.1f%% of SGEMM", 100.0 * it->second.gflops / gemm_rate);
      if (&spec != &specs.front()) {
        auto base = rep.entries.find(bench_name(specs.front(), n));
        if (base != rep.entries.end()) {
          std::printf("  %8.2fx faster than %s", base->second.seconds / it->second.seconds,
                      specs.front().to_string().c_str());
        }
      }
      std::printf("\n");
    }
    if (xs.size() >= 2) {
      double mx = 0, my = 0;
      for (std::size_t i = 0; i < xs.size(); ++i) mx += xs[i], my += ys[i];
      mx /= double(xs.size());
      my /= double(ys.size());
      double sxy = 0, sxx = 0;
      for (std::size_t i = 0; i < xs.size(); ++i) {
        sxy += (xs[i] - mx) * (ys[i] - my);
        sxx += (xs[i] - mx) * (xs[i] - mx);
      }
      std::printf("    log-log slope of time vs n over n = %lld ... %lld: %.3f\n",
                  (long long)std::llround(std::exp(xs.front())),
                  (long long)std::llround(std::exp(xs.back())), sxy / sxx);
    }
  }
}

}  // namespace
}  // namespace attnbench

int main(int argc, char** argv) {
  using namespace attnbench;
  benchmark::Initialize(&argc, argv);  // consumes the --benchmark_* flags
  Options opt;
  std::string lengths = "1024,4096";
  CLI::App app{
      "Google Benchmark of attnbench variants over sequence lengths.\n"
      "Google Benchmark's own flags (--benchmark_repetitions=N, --benchmark_out=FILE, "
      "--benchmark_filter=REGEX, ...) are accepted too."};
  app.add_option("--variant", opt.variants, "variant spec NAME[:key=value,...]; repeatable")
      ->required();
  app.add_option("--n", lengths, "comma-separated sequence lengths (n_q = n_k)")
      ->capture_default_str();
  app.add_option("--batch", opt.batch, "batch size")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--heads", opt.heads, "heads")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--d", opt.d, "head dimension")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--dv", opt.d_v, "value dimension (default: d)");
  app.add_flag("--causal", opt.causal, "causal masking");
  app.add_option("--threads", opt.threads, "oneTBB threads (default: all cores)");
  app.add_flag("--gemm", opt.gemm, "also time Eigen SGEMM on a large square product");
  app.add_option("--gemm-n", opt.gemm_n, "SGEMM size")->capture_default_str();
  app.add_option("--temperature", opt.temperature, "standard deviation of Q (logit spread)")
      ->capture_default_str();
  app.add_option("--seed", opt.seed, "input seed")->capture_default_str();
  app.add_option("--memory-budget", opt.memory_budget_gib,
                 "skip configurations whose analytic memory exceeds this many GiB")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    std::size_t pos = 0;
    while (pos <= lengths.size()) {
      const std::size_t comma = std::min(lengths.find(',', pos), lengths.size());
      const std::string item = lengths.substr(pos, comma - pos);
      if (!item.empty()) opt.lengths.push_back(std::stoll(item));
      pos = comma + 1;
    }
  } catch (const std::exception&) {
    std::fprintf(stderr, "--n: '%s' is not a comma-separated list of lengths\n", lengths.c_str());
    return 2;
  }
  std::vector<VariantSpec> specs;
  try {
    for (const auto& text : opt.variants) {
      specs.push_back(parse_variant_spec(text));
      resolve_variant_params(specs.back().name, specs.back().params);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }

  const int threads = opt.threads > 0 ? opt.threads : tbb::this_task_arena::max_concurrency();
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
  g_arena = std::make_unique<tbb::task_arena>(threads);

  if (opt.gemm) {
    benchmark::RegisterBenchmark(("sgemm/n:" + std::to_string(opt.gemm_n)).c_str(),
                                 [n = opt.gemm_n](benchmark::State& s) { run_gemm(s, n); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  for (const auto& spec : specs) {
    for (Index n : opt.lengths) {
      benchmark::RegisterBenchmark(
          bench_name(spec, n).c_str(),
          [&opt, spec, n](benchmark::State& s) { run_variant(s, opt, spec, n); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  g_live.reset();
  print_summary(opt, specs, reporter);
  benchmark::Shutdown();
  return 0;
}
