// `attnbench list` and `attnbench forward`.
#include "harness/commands.h"

#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "attention/metrics.h"
#include "attention/reference.h"
#include "attention/registry.h"
#include "harness/data/tensor_io.h"
#include "harness/data/workloads.h"
#include "harness/presets.h"
#include "harness/spec.h"

namespace attnbench::harness {

namespace {

std::string traits_text(const VariantTraits& t) {
  std::string s = t.exact ? "exact" : "approximate";
  if (t.causal) s += ", causal";
  if (!t.non_causal) s += " only";
  if (t.key_padding) s += ", key padding";
  s += t.deterministic ? ", deterministic" : ", non-deterministic";
  if (t.randomized) s += ", randomized (seed)";
  if (!t.rows_sum_to_one) s += ", rows need not sum to 1";
  s += "; reference ";
  s += to_string(t.reference);
  return s;
}

void print_params(const std::vector<ParamSpec>& params, const char* indent) {
  if (params.empty()) {
    std::printf("%sparameters: none\n", indent);
    return;
  }
  std::printf("%sparameters:\n", indent);
  for (const auto& p : params) {
    const std::string def = p.default_value.is_null() ? "auto" : p.default_value.dump();
    std::printf("%s  %-16s %-8s default %-8s %-22s %s", indent, p.name.c_str(), to_string(p.type),
                def.c_str(), p.range_string().c_str(), p.doc.c_str());
    if (p.default_value.is_null() && !p.auto_rule.empty()) {
      std::printf(" (auto: %s)", p.auto_rule.c_str());
    }
    std::printf("\n");
  }
}

Json preset_summary(const EmbeddedPreset& p) {
  Json spec = Json::parse(p.text);
  Json j = {{"name", p.name}, {"description", spec.value("description", "")}, {"spec", spec}};
  try {
    const Experiment ex = build_experiment(spec, p.name, /*lenient=*/true, Overrides{});
    j["configurations"] = ex.configs.size();
    j["warnings"] = ex.warnings;
  } catch (const SpecError& e) {
    j["configurations"] = 0;
    j["warnings"] = Json::array({e.what()});
  }
  return j;
}

}  // namespace

int list_command(const std::string& what, bool json) {
  const bool all = what.empty();
  if (!all && what != "variants" && what != "presets" && what != "workloads") {
    throw SpecError("list: unknown section '" + what +
                    "'; expected variants, presets or workloads");
  }
  const auto& registry = Registry::instance();
  if (json) {
    Json out = Json::object();
    if (all || what == "variants") {
      out["variants"] = Json::array();
      for (const auto& name : registry.names())
        out["variants"].push_back(registry.get(name).describe());
    }
    if (all || what == "presets") {
      out["presets"] = Json::array();
      for (const auto& p : embedded_presets()) out["presets"].push_back(preset_summary(p));
    }
    if (all || what == "workloads") {
      out["workloads"] = Json::array();
      for (const auto& w : workload_catalog()) out["workloads"].push_back(describe_workload(w));
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (all || what == "variants") {
    const auto names = registry.names();
    std::printf("Variants (%zu registered; parameters: name, type, default, range, meaning)\n",
                names.size());
    std::vector<std::string> families;
    for (const auto& n : names) {
      const auto& f = registry.get(n).traits.family;
      if (std::find(families.begin(), families.end(), f) == families.end()) families.push_back(f);
    }
    for (const auto& family : families) {
      std::printf("\n%s\n", family.c_str());
      for (const auto& n : names) {
        const VariantInfo& info = registry.get(n);
        if (info.traits.family != family) continue;
        std::printf("  %s: %s\n", n.c_str(), info.summary.c_str());
        if (!info.paper.empty()) std::printf("      paper: %s\n", info.paper.c_str());
        std::printf("      traits: %s\n", traits_text(info.traits).c_str());
        std::printf("      time %s; extra memory %s\n", info.traits.time_complexity.c_str(),
                    info.traits.memory_complexity.c_str());
        print_params(info.params, "      ");
      }
    }
    std::printf("\n");
  }
  if (all || what == "presets") {
    std::printf("Presets (attnbench run NAME)\n");
    for (const auto& p : embedded_presets()) {
      const Json s = preset_summary(p);
      std::printf("\n  %s: %zu configurations with the variants registered now\n", p.name,
                  s["configurations"].get<std::size_t>());
      std::printf("      %s\n", s["description"].get<std::string>().c_str());
      for (const auto& w : s["warnings"]) {
        std::printf("      note: %s\n", w.get<std::string>().c_str());
      }
    }
    std::printf("\n");
  }
  if (all || what == "workloads") {
    std::printf("Workloads (inputs; spec field \"workloads\")\n");
    for (const auto& w : workload_catalog()) {
      std::printf("\n  %s: %s\n", w.name.c_str(), w.summary.c_str());
      if (!w.expected_stats.empty()) {
        std::printf("      attention statistics: %s\n", w.expected_stats.c_str());
      }
      if (w.params_doc.empty()) {
        print_params(w.params, "      ");
      } else {
        std::printf("      parameters: %s\n", w.params_doc.c_str());
      }
    }
  }
  return 0;
}

int forward_command(const ForwardOptions& o) {
  using Clock = std::chrono::steady_clock;
  auto load = [](const std::string& path, const char* which) {
    try {
      return read_tensor_file(path);
    } catch (const std::exception& e) {
      throw SpecError(std::string("--") + which + ": " + e.what());
    }
  };
  const LoadedTensor q = load(o.q, "q");
  const LoadedTensor k = load(o.k, "k");
  const LoadedTensor v = load(o.v, "v");
  auto shape = [](const Tensor4& t) { return t.shape_string(); };
  if (q.tensor.batch() != k.tensor.batch() || q.tensor.batch() != v.tensor.batch() ||
      q.tensor.heads() != k.tensor.heads() || q.tensor.heads() != v.tensor.heads()) {
    throw SpecError("--q, --k, --v: batch and head dimensions differ: q " + shape(q.tensor) +
                    ", k " + shape(k.tensor) + ", v " + shape(v.tensor));
  }
  if (q.tensor.cols() != k.tensor.cols()) {
    throw SpecError("--q, --k: head dimension d differs: q " + shape(q.tensor) + ", k " +
                    shape(k.tensor));
  }
  if (k.tensor.rows() != v.tensor.rows()) {
    throw SpecError("--k, --v: number of keys differs: k " + shape(k.tensor) + ", v " +
                    shape(v.tensor));
  }
  Problem p;
  p.batch = q.tensor.batch();
  p.heads = q.tensor.heads();
  p.n_q = q.tensor.rows();
  p.n_k = k.tensor.rows();
  p.d = q.tensor.cols();
  p.d_v = v.tensor.cols();
  p.causal = o.causal;
  p.scale = o.scale;

  VariantSpec vs;
  try {
    vs = parse_variant_spec(o.variant);
    resolve_variant_params(vs.name, vs.params);
  } catch (const std::invalid_argument& e) {
    throw SpecError(std::string("--variant: ") + e.what());
  }
  const VariantInfo& info = Registry::instance().get(vs.name);
  if (!vs.params.contains("seed")) {
    for (const auto& ps : info.params) {
      if (ps.name == "seed") vs.params["seed"] = o.seed;
    }
  }
  const int threads = o.threads > 0 ? o.threads : hardware_cores();
  Tensor4 out(p.batch, p.heads, p.n_q, p.d_v);
  std::unique_ptr<Attention> attn;
  double setup = 0, fwd = 0;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, std::size_t(threads));
    tbb::task_arena arena(threads);
    try {
      const auto t0 = Clock::now();
      arena.execute([&] { attn = make_attention(vs, p); });
      setup = std::chrono::duration<double>(Clock::now() - t0).count();
    } catch (const std::invalid_argument& e) {
      throw SpecError(std::string("--variant: ") + e.what());
    }
    const auto t0 = Clock::now();
    arena.execute([&] { attn->forward(q.tensor, k.tensor, v.tensor, out); });
    fwd = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  std::vector<Index> out_shape = q.shape;
  out_shape.back() = p.d_v;
  try {
    write_tensor_file(o.out, out, out_shape, q.dtype);
  } catch (const std::exception& e) {
    throw SpecError(std::string("--out: ") + e.what());
  }
  std::fprintf(stderr, "%s on %s: setup %.6g s, forward %.6g s (%d threads); wrote %s\n",
               vs.to_string().c_str(), p.to_string().c_str(), setup, fwd, threads, o.out.c_str());
  if (o.error) {
    const auto rows =
        select_rows(p.n_q, o.error_rows, std::min<Index>(o.error_rows, p.n_q), o.seed);
    const auto ref = reference_attention(q.tensor, k.tensor, v.tensor, KeyMask(), p,
                                         info.traits.reference, rows);
    Json e = compute_error(out, v.tensor, ref).to_json();
    e["reference"] = to_string(info.traits.reference);
    Json report = {{"variant", vs.name},
                   {"params", attn->resolved_params()},
                   {"problem",
                    {{"batch", p.batch},
                     {"heads", p.heads},
                     {"n_q", p.n_q},
                     {"n_k", p.n_k},
                     {"d", p.d},
                     {"d_v", p.d_v},
                     {"causal", p.causal},
                     {"scale", p.effective_scale()}}},
                   {"setup", setup},
                   {"forward", fwd},
                   {"error", e}};
    std::cout << report.dump(2) << "\n";
  }
  return 0;
}

}  // namespace attnbench::harness
