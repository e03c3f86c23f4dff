// The sweep runner: one child per configuration, statuses, budgets, resume, progress.
#include "harness/runner.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "attention/registry.h"
#include "harness/results.h"

namespace attnbench::harness {

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_interrupted = 0;

void on_interrupt(int) { g_interrupted = 1; }

struct SignalGuard {
  struct sigaction old_int {
  }, old_term{};
  SignalGuard() {
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: poll() returns EINTR at once
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  }
};

std::string duration_text(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  const long t = long(s + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  }
  return buf;
}

std::string seconds_text(double s) {
  char buf[32];
  if (s < 1e-3) {
    std::snprintf(buf, sizeof buf, "%.1f us", s * 1e6);
  } else if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  }
  return buf;
}

std::string signal_text(int sig) {
  const char* name = strsignal(sig);
  return "signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
}

// The last few lines of the child's output, for the message of a crash.
std::string tail_lines(const std::string& log, std::size_t max_chars = 600) {
  std::string t = log;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  if (t.size() > max_chars) t = "..." + t.substr(t.size() - max_chars);
  return t;
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Reads what is available; false at end of file.
bool drain(int fd, std::string& into, std::size_t keep_last = 0) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, std::size_t(n));
      if (keep_last > 0 && into.size() > 2 * keep_last) into.erase(0, into.size() - keep_last);
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return true;  // EAGAIN: nothing more for now
  }
}

}  // namespace

std::string self_executable() {
  std::error_code ec;
  const auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot locate the attnbench executable: " + ec.message());
  return p.string();
}

ChildOutcome run_in_child(const std::string& executable, const Config& config) {
  ChildOutcome outcome;
  const std::string config_json = config.to_json().dump();
  int proto[2], log[2];
  if (pipe2(proto, O_CLOEXEC) != 0 || pipe2(log, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  // Everything the child needs is prepared before fork: only async-signal-safe calls follow.
  std::vector<std::string> args = {executable, "__measure", "--fd", "3", config_json};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);                     // its own group: a time-out kills everything it started
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // dies with the parent, even a SIGKILLed parent
    if (getppid() != parent) _exit(126);
    if (proto[1] == 3) {
      fcntl(3, F_SETFD, 0);
    } else {
      dup2(proto[1], 3);
    }
    dup2(log[1], 1);
    dup2(log[1], 2);
    execv(executable.c_str(), argv.data());
    _exit(127);
  }
  setpgid(pid, pid);
  ::close(proto[1]);
  ::close(log[1]);
  set_nonblocking(proto[0]);
  set_nonblocking(log[0]);

  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(config.timeout);
  std::string proto_text, log_text;
  bool proto_open = true, log_open = true, timed_out = false, killed = false;
  while (proto_open || log_open) {
    if (g_interrupted && !killed) {
      kill(-pid, SIGKILL);
      killed = true;
      outcome.interrupted = true;
    }
    const auto now = Clock::now();
    if (now >= deadline && !killed) {
      kill(-pid, SIGKILL);
      killed = timed_out = true;
    }
    pollfd fds[2];
    int nfds = 0;
    if (proto_open) fds[nfds++] = {proto[0], POLLIN, 0};
    if (log_open) fds[nfds++] = {log[0], POLLIN, 0};
    const double left = std::chrono::duration<double>(deadline - now).count();
    const int wait_ms = killed ? 100 : int(std::clamp(left * 1000.0, 1.0, 200.0));
    const int r = poll(fds, nfds, wait_ms);
    if (r < 0 && errno != EINTR) break;
    if (proto_open) proto_open = drain(proto[0], proto_text);
    if (log_open) log_open = drain(log[0], log_text, 1 << 16);
  }
  ::close(proto[0]);
  ::close(log[0]);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }

  // The protocol: "phase NAME" lines, then one "record {json}" line.
  std::string phase = "start";
  Json record;
  std::size_t pos = 0;
  while (pos < proto_text.size()) {
    const std::size_t nl = proto_text.find('\n', pos);
    if (nl == std::string::npos) break;
    const std::string line = proto_text.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.rfind("phase ", 0) == 0) phase = line.substr(6);
    if (line.rfind("record ", 0) == 0) {
      record = Json::parse(line.substr(7), nullptr, false);
      if (record.is_discarded()) record = Json();
    }
  }
  if (record.is_object() && !outcome.interrupted) {
    outcome.record = std::move(record);
    return outcome;
  }
  Json rec = {{"status", "crash"}};
  const std::string tail = tail_lines(log_text);
  if (timed_out) {
    rec["status"] = "timeout";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", config.timeout);
    rec["message"] = "exceeded the time limit of " + std::string(buf) + " s during " + phase;
  } else if (WIFSIGNALED(wstatus)) {
    const int sig = WTERMSIG(wstatus);
    if (sig == SIGKILL) {
      rec["status"] = "oom";
      rec["message"] = "killed by SIGKILL during " + phase +
                       " (not by attnbench: most likely the kernel's out-of-memory killer)";
    } else if (sig == SIGABRT && log_text.find("std::bad_alloc") != std::string::npos) {
      rec["status"] = "oom";
      rec["message"] = "std::bad_alloc escaped during " + phase + ": " + tail;
    } else {
      rec["message"] = "killed by " + signal_text(sig) + " during " + phase +
                       (tail.empty() ? "" : "; output: " + tail);
    }
  } else if (WIFEXITED(wstatus)) {
    rec["message"] = "exited with code " + std::to_string(WEXITSTATUS(wstatus)) +
                     " without a record during " + phase +
                     (tail.empty() ? "" : "; output: " + tail);
  }
  outcome.record = std::move(rec);
  return outcome;
}

int run_experiment(const Experiment& ex, const RunOptions& opts) {
  namespace fs = std::filesystem;
  const bool exists = fs::exists(opts.out_path);
  if (exists && !opts.resume) {
    throw SpecError("output file " + opts.out_path +
                    " exists; pass --resume to continue that run, or choose another --out");
  }
  if (!opts.out_path.empty() && fs::path(opts.out_path).has_parent_path()) {
    fs::create_directories(fs::path(opts.out_path).parent_path());
  }

  std::set<std::string> done_ids;
  std::map<std::string, std::pair<std::string, double>> failed_series;  // id -> (status, size)
  auto note_failure = [&](const Json& rec) {
    const std::string status = rec.value("status", "");
    if (status != "timeout" && status != "oom") return;
    const std::string series = rec.value("series_id", "");
    const double size =
        double(rec.value("batch", 1)) * double(rec.value("n_q", 0)) * double(rec.value("n_k", 0));
    auto it = failed_series.find(series);
    if (it == failed_series.end() || size < it->second.second) {
      failed_series[series] = {status + " at n=" + std::to_string(rec.value("n_q", 0)), size};
    }
  };

  std::size_t valid_bytes = 0;
  Json context;
  if (exists) {
    ExistingRun old = read_results(opts.out_path);
    for (const auto& w : old.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    done_ids = old.config_ids;
    valid_bytes = old.valid_bytes;
    for (const auto& r : old.records) note_failure(r);
    context = old.context;
    if (!context.is_null() && context.contains("spec") &&
        context["spec"].value("name", "") != ex.name) {
      std::fprintf(stderr, "warning: %s was started by spec '%s', resumed with '%s'\n",
                   opts.out_path.c_str(), context["spec"].value("name", "").c_str(),
                   ex.name.c_str());
    }
  }
  ResultsWriter writer(opts.out_path, valid_bytes, exists);
  if (context.is_null()) {
    std::vector<int> threads;
    for (const auto& c : ex.configs) {
      if (std::find(threads.begin(), threads.end(), c.threads) == threads.end()) {
        threads.push_back(c.threads);
      }
    }
    std::sort(threads.begin(), threads.end());
    if (ex.calibrate_gemm) std::fprintf(stderr, "calibrating Eigen SGEMM...\n");
    writer.append(make_context(ex.resolved, threads, ex.calibrate_gemm, opts.command));
  }

  const std::string exe = self_executable();
  const bool tty = isatty(2);
  SignalGuard signals;
  const auto start = Clock::now();
  const std::size_t total = ex.configs.size();
  std::size_t done = 0, ran = 0;
  double ran_seconds = 0;
  std::size_t remaining_to_run = 0;
  for (const auto& c : ex.configs) remaining_to_run += done_ids.count(c.id) ? 0 : 1;
  std::map<std::string, int> counts;
  const std::size_t already = total - remaining_to_run;
  if (already > 0) {
    std::fprintf(stderr, "resuming: %zu of %zu configurations already recorded\n", already, total);
  }

  for (const auto& c : ex.configs) {
    if (done_ids.count(c.id)) {
      ++done;
      continue;
    }
    if (g_interrupted) break;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double eta = ran > 0 ? ran_seconds / double(ran) * double(remaining_to_run) : -1;
    char head[96];
    std::snprintf(head, sizeof head, "[%zu/%zu] %s elapsed, ETA %s | ", done + 1, total,
                  duration_text(elapsed).c_str(), eta >= 0 ? duration_text(eta).c_str() : "?");
    if (tty) {
      std::fprintf(stderr, "\r\033[K%s%s", head, c.label().c_str());
      std::fflush(stderr);
    }

    Json rec = {{"type", "result"},
                {"config_id", c.id},
                {"series_id", c.series_id},
                {"variant", c.variant},
                {"family", c.family},
                {"params", c.params},
                {"spec_params", c.spec_params},
                {"batch", c.problem.batch},
                {"heads", c.problem.heads},
                {"n_q", c.problem.n_q},
                {"n_k", c.problem.n_k},
                {"d", c.problem.d},
                {"d_v", c.problem.d_v},
                {"causal", c.problem.causal},
                {"key_padding", c.problem.key_padding},
                {"padding_fraction", c.padding},
                {"scale", c.problem.scale},
                {"workload", {{"name", c.workload}, {"params", c.workload_params}}},
                {"seed", c.seed},
                {"threads", c.threads},
                {"repetitions_requested", c.timing.repetitions}};
    const auto t0 = Clock::now();
    bool started = false;

    // Not started: a shorter length of the same series ran out of time or memory.
    const auto failed = failed_series.find(c.series_id);
    const double size = double(c.problem.batch) * double(c.problem.n_q) * double(c.problem.n_k);
    const VariantInfo& info = Registry::instance().get(c.variant);
    double analytic = -1;
    std::string analytic_note;
    try {
      if (info.cost)
        analytic = info.cost(c.problem, ParamSet(c.variant, c.params), c.threads).memory_bytes;
    } catch (const std::exception& e) {
      analytic_note = e.what();
    }
    const double io_bytes = double(sizeof(float)) * double(c.problem.batch * c.problem.heads) *
                            double(c.problem.n_q * (c.problem.d + c.problem.d_v) +
                                   c.problem.n_k * (c.problem.d + c.problem.d_v));
    if (ex.skip_longer_after_failure && failed != failed_series.end() &&
        size > failed->second.second) {
      rec["status"] = "skipped";
      rec["message"] =
          "not started: a shorter length of this series ended with " + failed->second.first;
    } else if (analytic >= 0 && analytic + io_bytes > c.memory_budget) {
      rec["status"] = "skipped";
      rec["message"] = "not started: analytic memory " + format_bytes(analytic + io_bytes) +
                       " (variant " + format_bytes(analytic) + " + inputs and outputs " +
                       format_bytes(io_bytes) + ") exceeds the memory budget of " +
                       format_bytes(c.memory_budget);
      rec["memory"] = {{"analytic", analytic}};
    } else {
      if (analytic < 0 && !analytic_note.empty()) {
        std::fprintf(stderr,
                     "%swarning: %s: analytic memory unknown before setup (%s); "
                     "the budget is not checked\n",
                     tty ? "\n" : "", c.variant.c_str(), analytic_note.c_str());
      }
      started = true;
      ChildOutcome out = run_in_child(exe, c);
      if (out.interrupted) break;
      for (auto& [key, value] : out.record.items()) rec[key] = value;
    }
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    rec["wall"] = wall;
    writer.append(rec);
    note_failure(rec);
    ++done;
    --remaining_to_run;
    if (started) {
      ++ran;
      ran_seconds += wall;
    }
    const std::string status = rec.value("status", "?");
    ++counts[status];
    std::string result = status;
    if (status == "ok" && rec.contains("time")) {
      result += " " + seconds_text(rec["time"].value("median", 0.0));
    } else if (rec.contains("message")) {
      std::string m = rec["message"].get<std::string>();
      if (m.size() > 160) m = m.substr(0, 157) + "...";
      result += ": " + m;
    }
    std::fprintf(stderr, "%s%s%s -> %s\n", tty ? "\r\033[K" : "", head, c.label().c_str(),
                 result.c_str());
  }

  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::string summary;
  for (const auto& [status, n] : counts) {
    summary += (summary.empty() ? "" : ", ") + std::to_string(n) + " " + status;
  }
  if (g_interrupted) {
    std::fprintf(stderr,
                 "\ninterrupted after %s: %zu of %zu configurations recorded; continue with "
                 "--resume --out %s\n",
                 duration_text(elapsed).c_str(), done, total, opts.out_path.c_str());
    std::printf("%s\n", opts.out_path.c_str());
    return 130;
  }
  std::fprintf(stderr, "finished %zu configurations in %s (%s)\n", total,
               duration_text(elapsed).c_str(),
               summary.empty() ? "all recorded before" : summary.c_str());
  std::printf("results: %s\n", opts.out_path.c_str());
  return 0;
}

}  // namespace attnbench::harness
