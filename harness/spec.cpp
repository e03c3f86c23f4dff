// Experiment specs: strict validation (every error names its field) and expansion.
#include "harness/spec.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "attention/registry.h"
#include "harness/data/workloads.h"

namespace attnbench::harness {

namespace {

[[noreturn]] void fail(const std::string& field, const std::string& what) {
  throw SpecError("spec field \"" + field + "\": " + what);
}

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string index_path(const std::string& field, std::size_t i) {
  return field + "[" + std::to_string(i) + "]";
}

const std::vector<std::string> kTopFields = {"name",
                                             "description",
                                             "variants",
                                             "workloads",
                                             "lengths",
                                             "batch",
                                             "heads",
                                             "d",
                                             "d_v",
                                             "causal",
                                             "key_padding",
                                             "scale",
                                             "seeds",
                                             "threads",
                                             "repetitions",
                                             "min_time",
                                             "warmup_time",
                                             "timeout",
                                             "memory_budget",
                                             "error",
                                             "calibrate_gemm",
                                             "skip_longer_after_failure"};

void check_fields(const Json& obj, const std::string& field,
                  const std::vector<std::string>& allowed) {
  if (!obj.is_object()) fail(field, "expected a JSON object, got " + obj.dump());
  for (const auto& [key, value] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      fail(field.empty() ? key : field + "." + key,
           "unknown field; valid fields: " + join(allowed));
    }
  }
}

// A scalar or a non-empty list of scalars, each checked by `check`.
template <typename T, typename Check>
std::vector<T> list_of(const Json& value, const std::string& field, Check check) {
  std::vector<T> out;
  if (value.is_array()) {
    if (value.empty()) fail(field, "expected a non-empty list");
    for (std::size_t i = 0; i < value.size(); ++i)
      out.push_back(check(value[i], index_path(field, i)));
  } else {
    out.push_back(check(value, field));
  }
  return out;
}

Index integer(const Json& v, const std::string& field, Index min, Index max) {
  const bool integral =
      v.is_number_integer() || (v.is_number_float() && std::isfinite(v.get<double>()) &&
                                v.get<double>() == std::floor(v.get<double>()));
  if (!integral) fail(field, "expected an integer, got " + v.dump());
  const double x = v.get<double>();
  if (x < double(min) || x > double(max)) {
    fail(field, "expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                    "], got " + v.dump());
  }
  return static_cast<Index>(x);
}

double number(const Json& v, const std::string& field, double min, double max,
              bool min_exclusive = false) {
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    fail(field, "expected a number, got " + v.dump());
  }
  const double x = v.get<double>();
  if (x < min || x > max || (min_exclusive && x == min)) {
    std::ostringstream os;
    os << "expected a number in " << (min_exclusive ? "(" : "[") << min << ", " << max << "], got "
       << v.dump();
    fail(field, os.str());
  }
  return x;
}

bool boolean(const Json& v, const std::string& field) {
  if (!v.is_boolean()) fail(field, "expected true or false, got " + v.dump());
  return v.get<bool>();
}

std::string text(const Json& v, const std::string& field) {
  if (!v.is_string()) fail(field, "expected a string, got " + v.dump());
  return v.get<std::string>();
}

constexpr Index kMaxLength = Index(1) << 31;

struct Length {
  Index n_q, n_k;
  std::optional<Index> batch;
};

Length length_entry(const Json& v, const std::string& field) {
  if (v.is_object()) {
    check_fields(v, field, {"n", "n_q", "n_k", "batch"});
    Length l{0, 0, std::nullopt};
    if (v.contains("n")) {
      if (v.contains("n_q") || v.contains("n_k")) fail(field, "give either n or n_q and n_k");
      l.n_q = l.n_k = integer(v.at("n"), field + ".n", 1, kMaxLength);
    } else {
      if (!v.contains("n_q") || !v.contains("n_k")) fail(field, "expected n, or n_q and n_k");
      l.n_q = integer(v.at("n_q"), field + ".n_q", 1, kMaxLength);
      l.n_k = integer(v.at("n_k"), field + ".n_k", 1, kMaxLength);
    }
    if (v.contains("batch")) l.batch = integer(v.at("batch"), field + ".batch", 1, 1 << 20);
    return l;
  }
  const Index n = integer(v, field, 1, kMaxLength);
  return {n, n, std::nullopt};
}

// Cartesian product of `grid` (key -> non-empty array), merged over `fixed`.
std::vector<Json> grid_points(const Json& fixed, const Json& grid) {
  std::vector<Json> points = {fixed};
  for (const auto& [key, values] : grid.items()) {
    std::vector<Json> next;
    for (const auto& p : points) {
      for (const auto& value : values) {
        Json q = p;
        q[key] = value;
        next.push_back(std::move(q));
      }
    }
    points = std::move(next);
  }
  return points;
}

struct VariantPoint {
  std::string name;
  Json spec_params;
  Json params;
};

struct WorkloadPoint {
  std::string name;
  Json params;
  std::optional<Problem> shape;  // the files workload: the geometry of its tensors
};

// Validates one entry's "params" and "grid" against `check(params_json)` (which throws
// std::invalid_argument), value by value so the error names the field exactly.
template <typename Resolve>
std::vector<std::pair<Json, Json>> expand_params(const Json& entry, const std::string& field,
                                                 Resolve resolve) {
  Json fixed = Json::object();
  Json grid = Json::object();
  if (entry.contains("params")) {
    fixed = entry.at("params");
    if (!fixed.is_object()) fail(field + ".params", "expected a JSON object, got " + fixed.dump());
    for (const auto& [key, value] : fixed.items()) {
      try {
        resolve(Json{{key, value}});
      } catch (const std::invalid_argument& e) {
        fail(field + ".params." + key, e.what());
      }
    }
  }
  if (entry.contains("grid")) {
    grid = entry.at("grid");
    if (!grid.is_object()) fail(field + ".grid", "expected a JSON object, got " + grid.dump());
    for (const auto& [key, values] : grid.items()) {
      const std::string f = field + ".grid." + key;
      if (!values.is_array() || values.empty()) {
        fail(f, "expected a non-empty list of values to sweep, got " + values.dump());
      }
      if (fixed.contains(key)) fail(f, "also given in params");
      for (std::size_t i = 0; i < values.size(); ++i) {
        try {
          resolve(Json{{key, values[i]}});
        } catch (const std::invalid_argument& e) {
          fail(index_path(f, i), e.what());
        }
      }
    }
  }
  std::vector<std::pair<Json, Json>> out;
  for (const Json& point : grid_points(fixed, grid)) {
    try {
      out.emplace_back(point, resolve(point));
    } catch (const std::invalid_argument& e) {
      fail(field, e.what());
    }
  }
  return out;
}

std::vector<std::string> family_members(const std::string& family) {
  std::vector<std::string> out;
  for (const auto& name : Registry::instance().names()) {
    if (family == "all" || Registry::instance().get(name).traits.family == family) {
      out.push_back(name);
    }
  }
  return out;
}

std::vector<std::string> workload_names() {
  std::vector<std::string> out;
  for (const auto& w : workload_catalog()) out.push_back(w.name);
  return out;
}

// One spec entry of "variants" -> its points; unknown names are errors unless lenient.
std::vector<VariantPoint> expand_variant_entry(const Json& raw, const std::string& field,
                                               bool lenient, std::vector<std::string>& warnings,
                                               Json& resolved_entries) {
  Json entry;
  if (raw.is_string()) {
    const std::string s = raw.get<std::string>();
    if (s == "all") {
      entry = {{"family", "all"}};
    } else {
      VariantSpec vs;
      try {
        vs = parse_variant_spec(s);
      } catch (const std::invalid_argument& e) {
        fail(field, e.what());
      }
      entry = {{"name", vs.name}};
      if (!vs.params.empty()) entry["params"] = vs.params;
    }
  } else if (raw.is_object()) {
    check_fields(raw, field, {"name", "family", "params", "grid"});
    entry = raw;
  } else {
    fail(field, "expected a variant name, \"NAME:key=value,...\", \"all\" or an object, got " +
                    raw.dump());
  }
  std::vector<std::string> names;
  if (entry.contains("family")) {
    if (entry.contains("name")) fail(field, "give either name or family");
    const std::string family = text(entry.at("family"), field + ".family");
    names = family_members(family);
    if (names.empty()) {
      const std::string msg = "no registered variant of family '" + family + "'";
      if (!lenient) fail(field + ".family", msg);
      warnings.push_back(field + ": " + msg + "; skipped");
    }
  } else if (entry.contains("name")) {
    names.push_back(text(entry.at("name"), field + ".name"));
  } else {
    fail(field, "expected a name or a family");
  }

  std::vector<VariantPoint> out;
  for (const auto& name : names) {
    const VariantInfo* info = Registry::instance().find(name);
    if (info == nullptr) {
      const std::string msg = "unknown variant '" + name +
                              "'; registered variants: " + join(Registry::instance().names());
      if (!lenient) fail(field + ".name", msg);
      warnings.push_back(field + ": variant '" + name + "' is not registered; skipped");
      continue;
    }
    try {
      auto points = expand_params(
          entry, field, [&](const Json& p) { return resolve_variant_params(name, p).json(); });
      Json resolved = {{"name", name}};
      if (entry.contains("params")) resolved["params"] = entry.at("params");
      if (entry.contains("grid")) resolved["grid"] = entry.at("grid");
      resolved_entries.push_back(resolved);
      for (auto& [spec_params, params] : points) {
        out.push_back({name, spec_params, params});
      }
    } catch (const SpecError& e) {
      if (!lenient) throw;
      warnings.push_back(std::string(e.what()) + "; variant '" + name + "' skipped");
    }
  }
  return out;
}

std::vector<WorkloadPoint> expand_workload_entry(const Json& raw, const std::string& field,
                                                 bool lenient, std::vector<std::string>& warnings,
                                                 Json& resolved_entries) {
  Json entry;
  if (raw.is_string()) {
    entry = {{"name", raw.get<std::string>()}};
  } else if (raw.is_object()) {
    check_fields(raw, field, {"name", "params", "grid"});
    if (!raw.contains("name")) fail(field, "expected a name");
    entry = raw;
  } else {
    fail(field, "expected a workload name or an object, got " + raw.dump());
  }
  const std::string name = text(entry.at("name"), field + ".name");
  const auto names = workload_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    const std::string msg = "unknown workload '" + name + "'; workloads: " + join(names);
    if (!lenient) fail(field + ".name", msg);
    warnings.push_back(field + ": workload '" + name + "' is not available; skipped");
    return {};
  }
  std::vector<WorkloadPoint> out;
  try {
    auto points = expand_params(
        entry, field, [&](const Json& p) { return resolve_workload_params(name, p).json(); });
    resolved_entries.push_back(entry);
    for (auto& [spec_params, params] : points) {
      WorkloadPoint wp{name, params, std::nullopt};
      if (name == "files") {
        // The tensors fix the geometry: the spec's lengths, batch, heads and d do not apply.
        try {
          wp.shape = files_problem(resolve_workload_params(name, params));
        } catch (const std::exception& e) {
          fail(field + ".params", e.what());
        }
      }
      out.push_back(std::move(wp));
    }
  } catch (const SpecError& e) {
    if (!lenient) throw;
    warnings.push_back(std::string(e.what()) + "; workload '" + name + "' skipped");
  }
  return out;
}

std::string compact(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

}  // namespace

int hardware_cores() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? int(n) : 1;
}

double physical_memory_bytes() {
  return double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
}

std::string stable_hash(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (std::fabs(bytes) >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.3g %s", bytes, units[u]);
  return buf;
}

double parse_bytes(const Json& value, const std::string& field) {
  if (value.is_number()) return number(value, field, 0, 1e18, /*min_exclusive=*/true);
  if (!value.is_string()) fail(field, "expected bytes (a number or \"8GiB\"), got " + value.dump());
  std::string s = value.get<std::string>();
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  if (s == "auto") return 0.5 * physical_memory_bytes();
  std::size_t pos = 0;
  double x = 0;
  try {
    x = std::stod(s, &pos);
  } catch (const std::exception&) {
    fail(field, "expected bytes such as 8GiB, 512MiB, 1e9 or auto, got " + value.dump());
  }
  const std::string unit = s.substr(pos);
  static const std::map<std::string, double> units = {{"", 1},
                                                      {"B", 1},
                                                      {"K", 1024.0},
                                                      {"KB", 1e3},
                                                      {"KiB", 1024.0},
                                                      {"M", 1048576.0},
                                                      {"MB", 1e6},
                                                      {"MiB", 1048576.0},
                                                      {"G", 1073741824.0},
                                                      {"GB", 1e9},
                                                      {"GiB", 1073741824.0},
                                                      {"T", 1099511627776.0},
                                                      {"TB", 1e12},
                                                      {"TiB", 1099511627776.0}};
  const auto it = units.find(unit);
  if (it == units.end() || !(x > 0) || !std::isfinite(x)) {
    fail(field, "expected bytes such as 8GiB, 512MiB, 1e9 or auto, got " + value.dump());
  }
  return x * it->second;
}

Json parse_spec_text(const std::string& text_in, const std::string& source) {
  try {
    return Json::parse(text_in);
  } catch (const Json::parse_error& e) {
    throw SpecError(source + ": malformed JSON: " + e.what());
  }
}

Json Config::identity() const {
  return {{"variant", variant},
          {"params", params},
          {"batch", problem.batch},
          {"heads", problem.heads},
          {"n_q", problem.n_q},
          {"n_k", problem.n_k},
          {"d", problem.d},
          {"d_v", problem.d_v},
          {"causal", problem.causal},
          {"key_padding", padding},
          {"scale", problem.scale},
          {"workload", {{"name", workload}, {"params", workload_params}}},
          {"seed", seed},
          {"threads", threads}};
}

Json Config::to_json() const {
  Json j = identity();
  j["family"] = family;
  j["spec_params"] = spec_params;
  j["timing"] = {{"repetitions", timing.repetitions},
                 {"min_time", timing.min_time},
                 {"warmup_time", timing.warmup_time}};
  j["error"] = {{"enabled", error.enabled},
                {"max_all_rows", error.max_all_rows},
                {"sample_rows", error.sample_rows}};
  j["timeout"] = timeout;
  j["memory_budget"] = memory_budget;
  j["config_id"] = id;
  j["series_id"] = series_id;
  return j;
}

Config Config::from_json(const Json& j) {
  Config c;
  c.variant = j.at("variant").get<std::string>();
  c.family = j.value("family", "");
  c.spec_params = j.value("spec_params", Json::object());
  c.params = j.at("params");
  c.problem.batch = j.at("batch").get<Index>();
  c.problem.heads = j.at("heads").get<Index>();
  c.problem.n_q = j.at("n_q").get<Index>();
  c.problem.n_k = j.at("n_k").get<Index>();
  c.problem.d = j.at("d").get<Index>();
  c.problem.d_v = j.at("d_v").get<Index>();
  c.problem.causal = j.at("causal").get<bool>();
  c.padding = j.at("key_padding").get<double>();
  c.problem.key_padding = c.padding > 0;
  c.problem.scale = j.at("scale").get<double>();
  c.workload = j.at("workload").at("name").get<std::string>();
  c.workload_params = j.at("workload").at("params");
  c.seed = j.at("seed").get<std::uint64_t>();
  c.threads = j.at("threads").get<int>();
  const Json& t = j.at("timing");
  c.timing = {t.at("repetitions").get<int>(), t.at("min_time").get<double>(),
              t.at("warmup_time").get<double>()};
  const Json& e = j.at("error");
  c.error = {e.at("enabled").get<bool>(), e.at("max_all_rows").get<Index>(),
             e.at("sample_rows").get<Index>()};
  c.timeout = j.at("timeout").get<double>();
  c.memory_budget = j.at("memory_budget").get<double>();
  c.id = j.value("config_id", "");
  c.series_id = j.value("series_id", "");
  return c;
}

std::string Config::label() const {
  std::string s = VariantSpec{variant, spec_params}.to_string();
  s += " n=" + std::to_string(problem.n_q);
  if (problem.n_k != problem.n_q) s += "/" + std::to_string(problem.n_k);
  s += " b" + std::to_string(problem.batch) + " h" + std::to_string(problem.heads) + " d" +
       std::to_string(problem.d);
  if (problem.d_v != problem.d) s += "/" + std::to_string(problem.d_v);
  if (problem.causal) s += " causal";
  if (padding > 0) s += " pad" + compact(padding);
  s += " " + workload + " seed" + std::to_string(seed) + " t" + std::to_string(threads);
  return s;
}

Index Config::kept_keys(Index b) const {
  if (padding <= 0) return problem.n_k;
  // Entry b loses a share growing with b; the last entry loses `padding` of its keys, so a
  // batch mixes lengths as a right-padded batch does (and batch 1 is padded too).
  const double lost = padding * double(problem.n_k) * double(b + 1) / double(problem.batch);
  return std::max<Index>(0, problem.n_k - static_cast<Index>(std::floor(lost)));
}

Experiment build_experiment(Json spec, const std::string& source, bool lenient,
                            const Overrides& ov) {
  Experiment ex;
  check_fields(spec, "", kTopFields);

  // Overrides replace the spec's fields before validation.
  std::string variants_field = "variants";
  if (!ov.variants.empty()) {
    Json list = Json::array();
    for (const auto& v : ov.variants) {
      VariantSpec vs;
      try {
        vs = parse_variant_spec(v);
      } catch (const std::invalid_argument& e) {
        fail("--variants", e.what());
      }
      bool kept = false;
      if (vs.params.empty() && spec.contains("variants") && spec["variants"].is_array()) {
        for (const auto& entry : spec["variants"]) {
          const bool same =
              (entry.is_string() && parse_variant_spec(entry.get<std::string>()).name == vs.name) ||
              (entry.is_object() && entry.value("name", "") == vs.name);
          if (same) {
            list.push_back(entry);
            kept = true;
          }
        }
      }
      if (!kept) list.push_back(v);
    }
    spec["variants"] = list;
    variants_field = "--variants";
    lenient = false;  // the user named them
  }
  if (!ov.lengths.empty()) spec["lengths"] = ov.lengths;
  if (!ov.threads.empty()) spec["threads"] = ov.threads;
  if (!ov.seeds.empty()) spec["seeds"] = ov.seeds;
  if (ov.repetitions) spec["repetitions"] = *ov.repetitions;
  if (ov.timeout) spec["timeout"] = *ov.timeout;
  if (ov.memory_budget) spec["memory_budget"] = *ov.memory_budget;

  Json& r = ex.resolved;
  ex.name = spec.contains("name") ? text(spec["name"], "name") : std::string("experiment");
  r["name"] = ex.name;
  if (spec.contains("description")) r["description"] = text(spec["description"], "description");

  if (!spec.contains("variants")) fail("variants", "required (a list of variants)");
  if (!spec["variants"].is_array() || spec["variants"].empty()) {
    fail(variants_field, "expected a non-empty list of variants");
  }
  auto positive = [](Index max) {
    return [max](const Json& v, const std::string& f) { return integer(v, f, 1, max); };
  };
  // lengths and d may be left out when every workload reads its tensors from files.
  const bool has_lengths = spec.contains("lengths"), has_d = spec.contains("d");
  const auto lengths =
      list_of<Length>(has_lengths ? spec["lengths"] : Json(1), "lengths", length_entry);
  const auto batches = list_of<Index>(spec.value("batch", Json(1)), "batch", positive(1 << 20));
  const auto heads = list_of<Index>(spec.value("heads", Json(1)), "heads", positive(1 << 20));
  const auto ds = list_of<Index>(has_d ? spec["d"] : Json(1), "d", positive(1 << 16));
  std::vector<std::optional<Index>> dvs = {std::nullopt};
  if (spec.contains("d_v") && !spec["d_v"].is_null()) {
    dvs.clear();
    for (Index x : list_of<Index>(spec["d_v"], "d_v", positive(1 << 16))) dvs.push_back(x);
  }
  const auto causals = list_of<bool>(spec.value("causal", Json(false)), "causal", boolean);
  const auto paddings = list_of<double>(spec.value("key_padding", Json(false)), "key_padding",
                                        [](const Json& v, const std::string& f) {
                                          if (v.is_boolean()) return v.get<bool>() ? 0.25 : 0.0;
                                          return number(v, f, 0.0, 1.0);
                                        });
  const double scale = spec.contains("scale") ? number(spec["scale"], "scale", 0, 1e6) : 0.0;
  const auto seeds = list_of<std::uint64_t>(
      spec.value("seeds", Json(0)), "seeds", [](const Json& v, const std::string& f) {
        return static_cast<std::uint64_t>(integer(v, f, 0, Index(1) << 53));
      });
  const auto threads_raw =
      list_of<Index>(spec.value("threads", Json(1)), "threads",
                     [](const Json& v, const std::string& f) { return integer(v, f, 0, 4096); });
  std::vector<int> threads;
  for (Index t : threads_raw) {
    const int resolved = t == 0 ? hardware_cores() : int(t);
    if (std::find(threads.begin(), threads.end(), resolved) == threads.end()) {
      threads.push_back(resolved);
    }
  }

  TimingOptions timing;
  if (spec.contains("repetitions")) {
    timing.repetitions = int(integer(spec["repetitions"], "repetitions", 1, 1000));
  }
  if (spec.contains("min_time"))
    timing.min_time = number(spec["min_time"], "min_time", 0, 3600, true);
  if (spec.contains("warmup_time")) {
    timing.warmup_time = number(spec["warmup_time"], "warmup_time", 0, 3600);
  }
  const double timeout =
      spec.contains("timeout") ? number(spec["timeout"], "timeout", 0, 1e7, true) : 600.0;
  const double budget = parse_bytes(spec.value("memory_budget", Json("auto")), "memory_budget");
  ErrorOptions err;
  if (spec.contains("error")) {
    const Json& e = spec["error"];
    check_fields(e, "error", {"enabled", "max_all_rows", "sample_rows"});
    if (e.contains("enabled")) err.enabled = boolean(e["enabled"], "error.enabled");
    if (e.contains("max_all_rows")) {
      err.max_all_rows = integer(e["max_all_rows"], "error.max_all_rows", 0, kMaxLength);
    }
    if (e.contains("sample_rows")) {
      err.sample_rows = integer(e["sample_rows"], "error.sample_rows", 1, kMaxLength);
    }
  }
  if (spec.contains("calibrate_gemm")) {
    ex.calibrate_gemm = boolean(spec["calibrate_gemm"], "calibrate_gemm");
  }
  if (spec.contains("skip_longer_after_failure")) {
    ex.skip_longer_after_failure =
        boolean(spec["skip_longer_after_failure"], "skip_longer_after_failure");
  }

  // Variants and workloads (registry look-ups; presets skip what is missing).
  std::vector<VariantPoint> variants;
  Json resolved_variants = Json::array();
  for (std::size_t i = 0; i < spec["variants"].size(); ++i) {
    auto pts = expand_variant_entry(spec["variants"][i], index_path(variants_field, i), lenient,
                                    ex.warnings, resolved_variants);
    variants.insert(variants.end(), pts.begin(), pts.end());
  }
  std::vector<WorkloadPoint> workloads;
  Json resolved_workloads = Json::array();
  const Json wl = spec.value("workloads", Json::array({"gaussian"}));
  if (!wl.is_array() || wl.empty()) fail("workloads", "expected a non-empty list of workloads");
  for (std::size_t i = 0; i < wl.size(); ++i) {
    auto pts = expand_workload_entry(wl[i], index_path("workloads", i), lenient, ex.warnings,
                                     resolved_workloads);
    workloads.insert(workloads.end(), pts.begin(), pts.end());
  }
  bool generated = false;
  for (const auto& w : workloads) generated = generated || !w.shape;
  if (generated && !has_lengths) fail("lengths", "required (a list of sequence lengths)");
  if (generated && !has_d) fail("d", "required (head dimension, or a list)");
  if (variants.empty()) fail(variants_field, "no variant left to run");
  if (workloads.empty()) fail("workloads", "no workload left to run");

  r["variants"] = resolved_variants;
  r["workloads"] = resolved_workloads;
  Json lengths_json = Json::array();
  for (const auto& l : lengths) {
    if (l.n_q == l.n_k && !l.batch) {
      lengths_json.push_back(l.n_q);
    } else {
      Json o = {{"n_q", l.n_q}, {"n_k", l.n_k}};
      if (l.batch) o["batch"] = *l.batch;
      lengths_json.push_back(o);
    }
  }
  r["lengths"] = lengths_json;
  r["batch"] = batches;
  r["heads"] = heads;
  r["d"] = ds;
  Json dv_json = Json::array();
  for (const auto& dv : dvs) dv_json.push_back(dv ? Json(*dv) : Json());
  r["d_v"] = dv_json;
  r["causal"] = causals;
  r["key_padding"] = paddings;
  r["scale"] = scale;
  r["seeds"] = seeds;
  r["threads"] = threads;
  r["repetitions"] = timing.repetitions;
  r["min_time"] = timing.min_time;
  r["warmup_time"] = timing.warmup_time;
  r["timeout"] = timeout;
  r["memory_budget"] = budget;
  r["error"] = {{"enabled", err.enabled},
                {"max_all_rows", err.max_all_rows},
                {"sample_rows", err.sample_rows}};
  r["calibrate_gemm"] = ex.calibrate_gemm;
  r["skip_longer_after_failure"] = ex.skip_longer_after_failure;

  std::set<std::string> seen;
  for (const auto& v : variants) {
    const VariantInfo& info = Registry::instance().get(v.name);
    for (const auto& w : workloads) {
      for (auto seed : seeds) {
        for (int t : threads) {
          for (Index b : batches) {
            for (Index h : heads) {
              for (Index d : ds) {
                for (const auto& dv : dvs) {
                  for (bool causal : causals) {
                    for (double pad : paddings) {
                      for (const auto& l : lengths) {
                        Config c;
                        c.variant = v.name;
                        c.family = info.traits.family;
                        c.spec_params = v.spec_params;
                        c.params = v.params;
                        // A variant's own seed parameter follows the configuration's seed
                        // unless the spec fixes it.
                        if (c.params.contains("seed") && !c.spec_params.contains("seed")) {
                          c.params["seed"] = seed;
                        }
                        c.problem.batch = l.batch.value_or(b);
                        c.problem.heads = h;
                        c.problem.n_q = l.n_q;
                        c.problem.n_k = l.n_k;
                        c.problem.d = d;
                        c.problem.d_v = dv.value_or(d);
                        c.problem.causal = causal;
                        c.problem.key_padding = pad > 0;
                        c.problem.scale = scale;
                        if (w.shape) {
                          c.problem.batch = w.shape->batch;
                          c.problem.heads = w.shape->heads;
                          c.problem.n_q = w.shape->n_q;
                          c.problem.n_k = w.shape->n_k;
                          c.problem.d = w.shape->d;
                          c.problem.d_v = w.shape->d_v;
                        }
                        c.padding = pad;
                        c.workload = w.name;
                        c.workload_params = w.params;
                        c.seed = seed;
                        c.threads = t;
                        c.timing = timing;
                        c.error = err;
                        c.timeout = timeout;
                        c.memory_budget = budget;
                        Json ident = c.identity();
                        c.id = stable_hash(ident.dump());
                        ident.erase("n_q");
                        ident.erase("n_k");
                        ident.erase("batch");
                        ident["batch_default"] = b;
                        c.series_id = stable_hash(ident.dump());
                        if (seen.insert(c.id).second) ex.configs.push_back(std::move(c));
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  return ex;
}

void apply_shard(Experiment& ex, int shard, int count) {
  // Whole series (every length of one setting) go to one shard, so that skipping the lengths
  // after a time-out works within each shard.
  std::map<std::string, std::size_t> series_index;
  std::vector<Config> kept;
  for (auto& c : ex.configs) {
    const auto it = series_index.emplace(c.series_id, series_index.size()).first;
    if (int(it->second % std::size_t(count)) == shard) kept.push_back(std::move(c));
  }
  ex.configs = std::move(kept);
  ex.resolved["shard"] = {{"index", shard}, {"count", count}};
}

}  // namespace attnbench::harness
