// Experiment specs: expansion, identities, and errors that name their field.
#include <gtest/gtest.h>

#include "attention/registry.h"
#include "harness/presets.h"
#include "harness/spec.h"

namespace attnbench::harness {
namespace {

Json base_spec() {
  return Json::parse(R"({
    "variants": ["full", {"name": "flash", "grid": {"block_q": [16, 32], "block_k": [8, 64]}}],
    "lengths": [32, 64],
    "d": 8,
    "heads": 2,
    "calibrate_gemm": false
  })");
}

std::string error_of(const Json& spec, bool lenient = false, const Overrides& ov = {}) {
  try {
    build_experiment(spec, "test", lenient, ov);
  } catch (const SpecError& e) {
    return e.what();
  }
  return "";
}

TEST(Spec, GridsExpandAsACartesianProductWithLengthsInnermost) {
  const Experiment ex = build_experiment(base_spec(), "test", false, {});
  ASSERT_EQ(ex.configs.size(), (1 + 2 * 2) * 2u);
  EXPECT_EQ(ex.configs[0].variant, "full");
  EXPECT_EQ(ex.configs[0].problem.n_q, 32);
  EXPECT_EQ(ex.configs[1].problem.n_q, 64);
  EXPECT_EQ(ex.configs[0].series_id, ex.configs[1].series_id);
  EXPECT_NE(ex.configs[0].id, ex.configs[1].id);
  EXPECT_EQ(ex.configs[2].variant, "flash");
  EXPECT_EQ(ex.configs[2].params["block_q"], 16);
  EXPECT_EQ(ex.configs[2].params["block_k"], 8);
  EXPECT_EQ(ex.configs[2].spec_params, Json::parse(R"({"block_q": 16, "block_k": 8})"));
  EXPECT_EQ(ex.configs[0].problem.d_v, 8) << "d_v defaults to d";
  EXPECT_EQ(ex.configs[0].threads, 1);
  EXPECT_EQ(ex.resolved["variants"].size(), 2u);
}

TEST(Spec, ConfigIdsAreStableAndIgnoreHowDefaultsWereWritten) {
  Json a = base_spec();
  a["variants"] = {"flash"};
  Json b = base_spec();
  // The defaults, written out.
  const ParamSet defaults = resolve_variant_params("flash", Json::object());
  b["variants"] = {"flash:block_q=" + std::to_string(defaults.get_int("block_q")) +
                   ",block_k=" + std::to_string(defaults.get_int("block_k"))};
  const auto ea = build_experiment(a, "a", false, {});
  const auto eb = build_experiment(b, "b", false, {});
  EXPECT_EQ(ea.configs[0].id, eb.configs[0].id);
  EXPECT_EQ(ea.configs[0].id, build_experiment(a, "a", false, {}).configs[0].id);
  Json c = a;
  c["seeds"] = {1};
  EXPECT_NE(build_experiment(c, "c", false, {}).configs[0].id, ea.configs[0].id);
}

TEST(Spec, OverridesReplaceFields) {
  Overrides ov;
  ov.variants = {"flash"};  // a bare name the spec lists keeps its grid
  ov.lengths = {128};
  ov.threads = {2};
  const Experiment ex = build_experiment(base_spec(), "test", false, ov);
  ASSERT_EQ(ex.configs.size(), 4u);
  for (const auto& c : ex.configs) {
    EXPECT_EQ(c.variant, "flash");
    EXPECT_EQ(c.problem.n_q, 128);
    EXPECT_EQ(c.threads, 2);
  }
}

TEST(Spec, LengthObjectsAndPaddingAndShards) {
  Json s = base_spec();
  s["variants"] = {"full"};
  s["lengths"] = Json::parse(R"([{"n_q": 16, "n_k": 48}, {"n": 64, "batch": 3}])");
  s["key_padding"] = 0.5;
  s["batch"] = 2;
  Experiment ex = build_experiment(s, "test", false, {});
  ASSERT_EQ(ex.configs.size(), 2u);
  EXPECT_EQ(ex.configs[0].problem.n_k, 48);
  EXPECT_EQ(ex.configs[0].problem.batch, 2);
  EXPECT_TRUE(ex.configs[0].problem.key_padding);
  EXPECT_EQ(ex.configs[0].kept_keys(0), 48 - 12);
  EXPECT_EQ(ex.configs[0].kept_keys(1), 48 - 24);
  EXPECT_EQ(ex.configs[1].problem.batch, 3);

  Json grid = base_spec();
  Experiment all = build_experiment(grid, "test", false, {});
  std::size_t total = 0;
  for (int i = 0; i < 3; ++i) {
    Experiment part = build_experiment(grid, "test", false, {});
    apply_shard(part, i, 3);
    total += part.configs.size();
    for (std::size_t k = 1; k < part.configs.size(); ++k) {
      // lengths of a series stay together
      if (part.configs[k].series_id != part.configs[k - 1].series_id) continue;
      EXPECT_GT(part.configs[k].problem.n_q, part.configs[k - 1].problem.n_q);
    }
  }
  EXPECT_EQ(total, all.configs.size());
}

struct BadSpec {
  const char* patch;  // JSON merge-patched onto base_spec()
  const char* field;  // the field the error must name
};

TEST(Spec, EveryErrorNamesItsField) {
  const BadSpec cases[] = {
      {R"({"lenghts": [1]})", "\"lenghts\""},
      {R"({"variants": ["no_such_variant"]})", "\"variants[0].name\""},
      {R"({"variants": ["flash:block_q=0"]})", "\"variants[0].params.block_q\""},
      {R"({"variants": ["flash:blockq=4"]})", "\"variants[0].params.blockq\""},
      {R"({"variants": [{"name": "flash", "grid": {"block_k": [8, -1]}}]})",
       "\"variants[0].grid.block_k[1]\""},
      {R"({"variants": [{"name": "flash", "grid": {"block_k": 8}}]})",
       "\"variants[0].grid.block_k\""},
      {R"({"variants": [{"name": "flash", "sizes": 1}]})", "\"variants[0].sizes\""},
      {R"({"variants": []})", "\"variants\""},
      {R"({"variants": [{"family": "no_family"}]})", "\"variants[0].family\""},
      {R"({"lengths": [32, 0]})", "\"lengths[1]\""},
      {R"({"lengths": [32.5]})", "\"lengths[0]\""},
      {R"({"lengths": []})", "\"lengths\""},
      {R"({"d": "64"})", "\"d\""},
      {R"({"heads": [2, 0]})", "\"heads[1]\""},
      {R"({"causal": "yes"})", "\"causal\""},
      {R"({"key_padding": 1.5})", "\"key_padding\""},
      {R"({"threads": [-1]})", "\"threads[0]\""},
      {R"({"seeds": [-3]})", "\"seeds[0]\""},
      {R"({"repetitions": 0})", "\"repetitions\""},
      {R"({"timeout": -1})", "\"timeout\""},
      {R"({"min_time": 0})", "\"min_time\""},
      {R"({"memory_budget": "lots"})", "\"memory_budget\""},
      {R"({"error": {"rows": 5}})", "\"error.rows\""},
      {R"({"error": {"sample_rows": 0}})", "\"error.sample_rows\""},
      {R"({"workloads": ["no_such_workload"]})", "\"workloads[0].name\""},
      {R"({"workloads": [{"name": "gaussian", "params": {"temperature": -2}}]})",
       "\"workloads[0].params.temperature\""},
      {R"({"workloads": [{"name": "gaussian", "params": {"warmth": 2}}]})",
       "\"workloads[0].params.warmth\""},
  };
  for (const auto& c : cases) {
    Json spec = base_spec();
    spec.merge_patch(Json::parse(c.patch));
    const std::string msg = error_of(spec);
    EXPECT_NE(msg.find(c.field), std::string::npos)
        << "patch " << c.patch << "\nexpected the field " << c.field << " in: " << msg;
  }
  Json no_d = base_spec();
  no_d.erase("d");
  EXPECT_NE(error_of(no_d).find("\"d\""), std::string::npos);
  Overrides ov;
  ov.variants = {"nope"};
  EXPECT_NE(error_of(base_spec(), true, ov).find("\"--variants[0].name\""), std::string::npos)
      << "a variant the user names is an error even in a preset";
}

TEST(Spec, PresetsSkipMissingVariantsWithAWarning) {
  Json spec = base_spec();
  spec["variants"] = {
      "full", "not_registered_yet", {{"name", "flash"}, {"params", {{"block_q", 0}}}}};
  spec["workloads"] = {"gaussian", "not_available_yet"};
  const Experiment ex = build_experiment(spec, "preset", /*lenient=*/true, {});
  EXPECT_EQ(ex.configs.size(), 2u);
  EXPECT_EQ(ex.warnings.size(), 3u);
  EXPECT_FALSE(error_of(spec, false).empty());
}

TEST(Spec, MalformedJsonIsASpecError) {
  EXPECT_THROW(parse_spec_text("{\"variants\": [", "x.json"), SpecError);
  try {
    parse_spec_text("{\"a\": 1,, }", "x.json");
  } catch (const SpecError& e) {
    EXPECT_NE(std::string(e.what()).find("x.json"), std::string::npos);
  }
}

TEST(Spec, ParseBytes) {
  EXPECT_DOUBLE_EQ(parse_bytes(Json("8GiB"), "f"), 8.0 * 1024 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(parse_bytes(Json("512 MiB"), "f"), 512.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(parse_bytes(Json(1e9), "f"), 1e9);
  EXPECT_DOUBLE_EQ(parse_bytes(Json("2GB"), "f"), 2e9);
  EXPECT_GT(parse_bytes(Json("auto"), "f"), 0);
  EXPECT_THROW(parse_bytes(Json("8 parsecs"), "f"), SpecError);
  EXPECT_THROW(parse_bytes(Json(-1), "f"), SpecError);
}

// Every shipped preset is valid; the only warnings allowed are variants or workloads that are not
// registered in this build. A preset naming a parameter its variant lacks fails here.
TEST(Spec, ShippedPresetsAreValid) {
  ASSERT_GE(embedded_presets().size(), 6u);
  for (const auto& name :
       {"quick", "scaling", "scaling-causal", "pareto", "lra-efficiency", "reformer-hashes"}) {
    const Json spec = find_preset(name);
    ASSERT_FALSE(spec.is_null()) << name;
    Experiment ex;
    ASSERT_NO_THROW(ex = build_experiment(spec, name, true, {})) << name;
    EXPECT_FALSE(ex.configs.empty()) << name;
    for (const auto& w : ex.warnings) {
      const bool missing = w.find("is not registered") != std::string::npos ||
                           w.find("is not available") != std::string::npos;
      EXPECT_TRUE(missing) << name << ": " << w;
    }
  }
  // quick covers every registered visible variant.
  const Experiment quick = build_experiment(find_preset("quick"), "quick", true, {});
  for (const auto& v : Registry::instance().names()) {
    bool found = false;
    for (const auto& c : quick.configs) found = found || c.variant == v;
    EXPECT_TRUE(found) << v;
  }
}

}  // namespace
}  // namespace attnbench::harness
