// The attnbench program end to end: spec errors, statuses of crashing, sleeping and
// over-budget configurations, memory and error figures in records, resume, and a results file
// that parses after the parent is killed. Runs attnbench_testbin (attnbench plus hidden test
// doubles) with tiny sizes and short limits.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "attention/params.h"
#include "attention/tensor.h"
#include "harness/data/tensor_io.h"

namespace attnbench {
namespace {

namespace fs = std::filesystem;

struct Result {
  int code = -1;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("attnbench_" + std::string(info->name()) + "_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result run(const std::vector<std::string>& args, const char* bin = ATTNBENCH_TESTBIN) {
    std::string cmd = quote(bin);
    for (const auto& a : args) cmd += " " + quote(a);
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    cmd += " >" + quote(out.string()) + " 2>" + quote(err.string()) + " </dev/null";
    const int status = std::system(cmd.c_str());
    Result r;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
  }

  // A small spec: tiny shapes, one short repetition, no GEMM calibration.
  Json spec(const Json& variants, const Json& extra = Json::object()) {
    Json s = {{"name", "test"}, {"variants", variants},   {"lengths", {16}},   {"heads", 2},
              {"d", 8},         {"repetitions", 1},       {"min_time", 0.001}, {"warmup_time", 0.0},
              {"timeout", 60},  {"calibrate_gemm", false}};
    s.merge_patch(extra);
    return s;
  }

  std::string write_spec(const Json& s, const std::string& name = "spec.json") {
    const fs::path p = dir_ / name;
    std::ofstream(p) << s.dump(2);
    return p.string();
  }

  // Every line must parse; returns them (context first).
  static std::vector<Json> read_jsonl(const fs::path& p) {
    std::vector<Json> lines;
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) {
      Json j = Json::parse(line, nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << "unparseable line: " << line;
      lines.push_back(j);
    }
    return lines;
  }

  static std::vector<Json> records(const std::vector<Json>& lines) {
    std::vector<Json> r;
    for (const auto& j : lines) {
      if (j.value("type", "") == "result") r.push_back(j);
    }
    return r;
  }

  fs::path dir_;
};

TEST_F(ProcessTest, EverySubcommandHasHelp) {
  for (const char* sub : {"list", "run", "forward"}) {
    const Result r = run({sub, "--help"}, ATTNBENCH_BIN);
    EXPECT_EQ(r.code, 0) << sub;
    EXPECT_NE(r.out.find("--"), std::string::npos) << sub;
  }
  EXPECT_EQ(run({}, ATTNBENCH_BIN).code, 2) << "a subcommand is required";
}

TEST_F(ProcessTest, ListShowsVariantsPresetsAndWorkloadsButNoTestDoubles) {
  Result r = run({"list", "--json"}, ATTNBENCH_BIN);
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = Json::parse(r.out);
  ASSERT_TRUE(j.contains("variants") && j.contains("presets") && j.contains("workloads"));
  std::set<std::string> names;
  for (const auto& v : j["variants"]) {
    names.insert(v["name"].get<std::string>());
    EXPECT_TRUE(v.contains("params") && v.contains("family")) << v.dump();
  }
  EXPECT_TRUE(names.count("flash"));
  std::set<std::string> presets;
  for (const auto& p : j["presets"]) presets.insert(p["name"].get<std::string>());
  for (const auto* p : {"quick", "scaling", "pareto", "lra-efficiency", "reformer-hashes"}) {
    EXPECT_TRUE(presets.count(p)) << p;
  }
  r = run({"list", "--json"});             // the test program hides its test doubles too
  const Json hidden = Json::parse(r.out);  // a range-for over a temporary's member would dangle
  for (const auto& v : hidden["variants"]) {
    EXPECT_EQ(v["name"].get<std::string>().rfind("test_", 0), std::string::npos);
  }
  r = run({"list"}, ATTNBENCH_BIN);
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("block_q"), std::string::npos) << "parameters are listed";
  EXPECT_NE(r.out.find("quick"), std::string::npos);
}

TEST_F(ProcessTest, SpecErrorsNameTheFieldExitWithTwoAndRunNothing) {
  struct Case {
    std::string text;  // the spec file's content
    std::string field;
  };
  const Json good = spec({"full"});
  auto patched = [&](const char* patch) {
    Json s = good;
    s.merge_patch(Json::parse(patch));
    return s.dump();
  };
  const std::vector<Case> cases = {
      {"{\"variants\": [\"full\"], \"lengths\": [16,", "malformed JSON"},
      {patched(R"({"lenghts": [16]})"), "\"lenghts\""},
      {patched(R"({"variants": ["ful"]})"), "\"variants[0].name\""},
      {patched(R"({"variants": ["flash:block_q=0"]})"), "\"variants[0].params.block_q\""},
      {patched(R"({"variants": [{"name": "flash", "grid": {"block_k": [8, "big"]}}]})"),
       "\"variants[0].grid.block_k[1]\""},
      {patched(R"({"lengths": [16, -4]})"), "\"lengths[1]\""},
      {patched(R"({"workloads": ["gausian"]})"), "\"workloads[0].name\""},
      {patched(R"({"timeout": 0})"), "\"timeout\""},
      {patched(R"({"memory_budget": "a lot"})"), "\"memory_budget\""},
  };
  for (const auto& c : cases) {
    const fs::path p = dir_ / "bad.json";
    std::ofstream(p) << c.text;
    const fs::path out = dir_ / "bad.jsonl";
    const Result r = run({"run", p.string(), "--out", out.string()});
    EXPECT_EQ(r.code, 2) << c.text << "\n" << r.err;
    EXPECT_NE(r.err.find(c.field), std::string::npos) << "expected " << c.field << " in: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one clear error: " << r.err;
    EXPECT_FALSE(fs::exists(out)) << "nothing runs: " << c.text;
  }
  // Overrides and unknown presets are checked the same way.
  Result r = run({"run", write_spec(good), "--variants", "nope", "--out", (dir_ / "x").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--variants"), std::string::npos) << r.err;
  r = run({"run", "no-such-preset"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("quick"), std::string::npos) << "lists the presets: " << r.err;
  r = run({"run", write_spec(good), "--shard", "3/2"});
  EXPECT_EQ(r.code, 2);
}

TEST_F(ProcessTest, FailuresAreRecordedAndTheSweepGoesOn) {
  const Json variants = Json::parse(R"([
    {"name": "test_crash", "grid": {"how": ["segv", "abort", "exit", "bad_alloc", "throw", "invalid"]}},
    {"name": "test_crash", "params": {"where": "setup", "how": "invalid"}},
    "test_nan",
    "full"
  ])");
  const fs::path out = dir_ / "r.jsonl";
  const Result r = run({"run", write_spec(spec(variants)), "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(out.string()), std::string::npos) << "prints the results path";
  const auto lines = read_jsonl(out);
  ASSERT_EQ(lines.size(), 10u);
  EXPECT_EQ(lines[0]["type"], "context");
  const auto recs = records(lines);
  auto status_of = [&](std::size_t i) { return recs[i]["status"].get<std::string>(); };
  auto message_of = [&](std::size_t i) { return recs[i].value("message", ""); };
  EXPECT_EQ(status_of(0), "crash");
  // AddressSanitizer catches SIGSEGV itself, reports and exits with 1.
  const bool segv = message_of(0).find("signal 11") != std::string::npos ||
                    message_of(0).find("SEGV") != std::string::npos;
  EXPECT_TRUE(segv) << message_of(0);
  EXPECT_NE(message_of(0).find("during forward"), std::string::npos) << message_of(0);
  EXPECT_EQ(status_of(1), "crash");
  EXPECT_NE(message_of(1).find("signal 6"), std::string::npos) << message_of(1);
  EXPECT_EQ(status_of(2), "crash");
  EXPECT_NE(message_of(2).find("exited with code 3"), std::string::npos) << message_of(2);
  EXPECT_EQ(status_of(3), "oom") << message_of(3);
  EXPECT_EQ(status_of(4), "error");
  EXPECT_NE(message_of(4).find("failing on purpose"), std::string::npos) << message_of(4);
  EXPECT_EQ(status_of(5), "error") << "a refusal at forward is an error, not unsupported";
  EXPECT_EQ(status_of(6), "unsupported");
  EXPECT_NE(message_of(6).find("how"), std::string::npos) << message_of(6);
  EXPECT_EQ(status_of(7), "error");
  EXPECT_NE(message_of(7).find("non-finite"), std::string::npos) << message_of(7);
  EXPECT_EQ(status_of(8), "ok") << "the sweep finished after the failures";
  for (const auto& rec : recs) {
    EXPECT_EQ(rec["config_id"].get<std::string>().size(), 16u);
    EXPECT_TRUE(rec.contains("wall"));
  }
}

TEST_F(ProcessTest, TimeOutKillsTheChildAndSkipsLongerLengths) {
  const Json s = spec(Json::parse(R"([{"name": "test_sleep", "params": {"seconds": 60}}])"),
                      Json::parse(R"({"lengths": [16, 32], "timeout": 1})"));
  const fs::path out = dir_ / "r.jsonl";
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = run({"run", write_spec(s), "--out", out.string()});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LT(seconds, 30.0) << "the sleeping child was not killed";
  const auto recs = records(read_jsonl(out));
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0]["status"], "timeout");
  EXPECT_NE(recs[0]["message"].get<std::string>().find("during forward"), std::string::npos);
  EXPECT_EQ(recs[1]["status"], "skipped");
  EXPECT_NE(recs[1]["message"].get<std::string>().find("timeout at n=16"), std::string::npos)
      << recs[1]["message"];
}

TEST_F(ProcessTest, OverBudgetConfigurationIsSkippedWithoutStarting) {
  // 1 TB in setup: started, it would end as oom, not as skipped.
  const Json s = spec(Json::parse(R"([{"name": "test_alloc", "params": {"setup_bytes": 1e12}},
                                      "full"])"),
                      Json::parse(R"({"memory_budget": "64MiB"})"));
  const fs::path out = dir_ / "r.jsonl";
  const Result r = run({"run", write_spec(s), "--out", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto recs = records(read_jsonl(out));
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0]["status"], "skipped");
  EXPECT_NE(recs[0]["message"].get<std::string>().find("exceeds the memory budget"),
            std::string::npos);
  EXPECT_DOUBLE_EQ(recs[0]["memory"]["analytic"].get<double>(), 1e12);
  EXPECT_FALSE(recs[0].contains("time"));
  EXPECT_EQ(recs[1]["status"], "ok");
}

TEST_F(ProcessTest, MemoryFiguresCountKnownAllocations) {
  const double setup = 8 << 20, forward = 4 << 20;
  const Json s = spec(Json{
      {{"name", "test_alloc"}, {"params", {{"setup_bytes", setup}, {"forward_bytes", forward}}}}});
  const fs::path out = dir_ / "r.jsonl";
  ASSERT_EQ(run({"run", write_spec(s), "--out", out.string()}).code, 0);
  const auto lines = read_jsonl(out);
  const auto recs = records(lines);
  ASSERT_EQ(recs.size(), 1u);
  ASSERT_EQ(recs[0]["status"], "ok") << recs[0].dump();
  const Json& m = recs[0]["memory"];
  EXPECT_DOUBLE_EQ(m["analytic"].get<double>(), setup + forward);
  EXPECT_GT(m["peak_rss"].get<double>(), setup);
  if (!lines[0]["malloc_accounting"].get<bool>()) GTEST_SKIP() << "no malloc accounting";
  // Inputs and outputs are excluded; the variant's own small objects may add a little.
  EXPECT_GE(m["setup_peak"].get<double>(), setup);
  EXPECT_LT(m["setup_peak"].get<double>(), setup + 65536);
  EXPECT_GE(m["forward_peak"].get<double>(), setup + forward);
  EXPECT_LT(m["forward_peak"].get<double>(), setup + forward + 65536);
  EXPECT_GE(m["steady_growth"].get<double>(), forward);
  EXPECT_GE(m["steady_allocations"].get<double>(), 1);
}

TEST_F(ProcessTest, ErrorMetricsFlowIntoRecords) {
  const Json s = spec(Json::array({"full", "test_uniform"}),
                      Json::parse(R"({"lengths": [24, 40], "causal": [false, true],
                                      "error": {"max_all_rows": 32, "sample_rows": 8}})"));
  const fs::path out = dir_ / "r.jsonl";
  ASSERT_EQ(run({"run", write_spec(s), "--out", out.string()}).code, 0);
  const auto recs = records(read_jsonl(out));
  ASSERT_EQ(recs.size(), 8u);
  for (const auto& r : recs) {
    ASSERT_EQ(r["status"], "ok") << r.dump();
    const Json& e = r["error"];
    const Index n = r["n_q"].get<Index>();
    EXPECT_EQ(e["rows_per_head"].get<Index>(), n <= 32 ? n : 8) << "all rows up to 32, 8 above";
    EXPECT_EQ(e["reference"], "softmax");
    EXPECT_TRUE(e["exact_stats"].contains("n_eff_ratio"));
    EXPECT_GT(r["flops"].get<double>(), 0);
    EXPECT_GT(r["gflops"].get<double>(), 0);
    EXPECT_GT(r["time"]["median"].get<double>(), 0);
    EXPECT_EQ(r["time"]["repetitions"].size(), 1u);
    if (r["variant"] == "full") {
      EXPECT_LT(e["rel_fro"].get<double>(), 1e-5);  // exact up to float rounding
    } else {
      // Uniform attention is the baseline of rel_uniform: exactly 1 up to float rounding.
      EXPECT_NEAR(e["rel_uniform"].get<double>(), 1.0, 1e-5);
      EXPECT_GT(e["rel_fro"].get<double>(), 0.01);
    }
  }
}

TEST_F(ProcessTest, ResumeSkipsRecordedConfigurationsAndDropsACutShortLine) {
  const Json s = spec(Json::array({"full", "flash"}), Json::parse(R"({"lengths": [8, 16]})"));
  const std::string path = write_spec(s);
  const fs::path out = dir_ / "r.jsonl";
  ASSERT_EQ(run({"run", path, "--out", out.string()}).code, 0);
  auto lines = read_jsonl(out);
  ASSERT_EQ(lines.size(), 5u);

  Result r = run({"run", path, "--out", out.string()});
  EXPECT_EQ(r.code, 2) << "an existing file needs --resume";
  r = run({"run", path, "--out", out.string(), "--resume"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_jsonl(out).size(), 5u) << "nothing to redo";

  // Drop the last record and leave half a line, as a writer killed mid-line would.
  std::string text = read_file(out);
  text.pop_back();
  text = text.substr(0, text.rfind('\n') + 1);
  const std::string last_id = lines.back()["config_id"];
  text += lines.back().dump().substr(0, 40);
  std::ofstream(out, std::ios::trunc) << text;
  r = run({"run", path, "--out", out.string(), "--resume"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("cut short"), std::string::npos) << r.err;
  lines = read_jsonl(out);
  ASSERT_EQ(lines.size(), 5u);
  std::set<std::string> ids;
  for (const auto& rec : records(lines)) ids.insert(rec["config_id"].get<std::string>());
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_TRUE(ids.count(last_id));
}

// SIGKILL (no handler runs) and SIGINT (handled) of the parent mid-sweep: every line parses,
// finished records survive, and --resume completes the sweep without duplicates.
TEST_F(ProcessTest, KillingTheParentLeavesAParseableFile) {
  const Json s = spec(Json::parse(R"([{"name": "test_sleep", "params": {"seconds": 0.1}}])"),
                      Json::parse(R"({"lengths": [8, 9, 10, 11, 12, 13, 14, 15]})"));
  const std::string path = write_spec(s);
  for (int sig : {SIGKILL, SIGINT}) {
    const fs::path out = dir_ / ("r" + std::to_string(sig) + ".jsonl");
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      freopen("/dev/null", "w", stderr);
      freopen("/dev/null", "w", stdout);
      execl(ATTNBENCH_TESTBIN, ATTNBENCH_TESTBIN, "run", path.c_str(), "--out", out.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    // Wait for the first records, then kill.
    for (int i = 0; i < 200 && records(read_jsonl(out)).size() < 2; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid, sig);
    int status = 0;
    waitpid(pid, &status, 0);
    if (sig == SIGINT) {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << status;
    }
    auto lines = read_jsonl(out);
    ASSERT_GE(lines.size(), 3u);
    EXPECT_EQ(lines[0]["type"], "context");
    const std::size_t before = records(lines).size();
    EXPECT_LT(before, 8u) << "killed too late to test anything";
    const Result r = run({"run", path, "--out", out.string(), "--resume"});
    ASSERT_EQ(r.code, 0) << r.err;
    lines = read_jsonl(out);
    std::set<std::string> ids;
    for (const auto& rec : records(lines)) {
      ids.insert(rec["config_id"].get<std::string>());
      EXPECT_EQ(rec["status"], "ok") << rec.dump();
    }
    EXPECT_EQ(records(lines).size(), 8u);
    EXPECT_EQ(ids.size(), 8u);
  }
}

TEST_F(ProcessTest, ForwardRunsOnTensorFiles) {
  Tensor4 q(1, 2, 12, 8), k(1, 2, 20, 8), v(1, 2, 20, 4);
  for (Index i = 0; i < q.size(); ++i) q.data()[i] = float(std::sin(0.37 * double(i)));
  for (Index i = 0; i < k.size(); ++i) k.data()[i] = float(std::cos(0.11 * double(i)));
  for (Index i = 0; i < v.size(); ++i) v.data()[i] = float(std::sin(0.05 * double(i) + 1.0));
  const std::string qp = (dir_ / "q.npy").string(), kp = (dir_ / "k.npy").string(),
                    vp = (dir_ / "v.npy").string(), op = (dir_ / "o.npy").string();
  Result r = run({"forward", "--variant", "full", "--q", qp, "--k", kp, "--v", vp, "--out", op});
  EXPECT_EQ(r.code, 2) << "a missing input file is a usage error";
  EXPECT_NE(r.err.find("--q"), std::string::npos) << r.err;
  try {
    write_tensor_file(qp, q, {2, 12, 8});
    write_tensor_file(kp, k, {2, 20, 8});
    write_tensor_file(vp, v, {2, 20, 4});
  } catch (const std::exception& e) {
    GTEST_SKIP() << "tensor files are not available in this build: " << e.what();
  }
  r = run({"forward", "--variant", "flash:block_q=5,block_k=7", "--q", qp, "--k", kp, "--v", vp,
           "--out", op, "--causal", "--threads", "2", "--error"},
          ATTNBENCH_BIN);
  ASSERT_EQ(r.code, 0) << r.err;
  const Json report = Json::parse(r.out);
  EXPECT_LT(report["error"]["rel_fro"].get<double>(), 1e-5);
  EXPECT_EQ(report["problem"]["n_k"], 20);
  const LoadedTensor o = read_tensor_file(op);
  EXPECT_EQ(o.shape, (std::vector<Index>{2, 12, 4}));
  EXPECT_EQ(o.dtype, "float32");
  r = run(
      {"forward", "--variant", "flash:block_q=0", "--q", qp, "--k", kp, "--v", vp, "--out", op});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("block_q"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace attnbench
