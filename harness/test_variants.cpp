// Test doubles for the harness, registered hidden (family "test"): a variant that crashes on
// purpose, one that sleeps, one that allocates known amounts, one that returns uniform
// attention, one that returns NaN. Compiled only into the attnbench_testbin program that the
// harness tests run, never into attnbench itself. O(n_q n_k d_v) time at most.
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#include "attention/registry.h"

namespace attnbench {
namespace {

// Fails in the chosen way at setup or at forward.
class TestCrash final : public Attention {
 public:
  TestCrash(const Problem& p, const ParamSet& params) : Attention("test_crash", p, params) {
    if (params_.get_string("where") == "setup") fail();
  }

 protected:
  void compute(const Tensor4&, const Tensor4&, const Tensor4&, Tensor4&, const KeyMask&) override {
    fail();
  }

 private:
  void fail() const {
    const std::string how = params_.get_string("how");
    if (how == "segv") std::raise(SIGSEGV);
    if (how == "abort") std::abort();
    if (how == "exit") std::_Exit(3);
    if (how == "bad_alloc") throw std::bad_alloc();
    if (how == "invalid") reject("how", how, "a problem this variant supports (on purpose)");
    throw std::runtime_error("test_crash: failing on purpose");
  }
};

class TestSleep final : public Attention {
 public:
  TestSleep(const Problem& p, const ParamSet& params) : Attention("test_sleep", p, params) {
    if (params_.get_string("where") == "setup") sleep();
  }

 protected:
  void compute(const Tensor4&, const Tensor4&, const Tensor4&, Tensor4& out,
               const KeyMask&) override {
    if (params_.get_string("where") == "forward") sleep();
    out.storage().assign(out.storage().size(), 0.0f);
  }

 private:
  void sleep() const {
    std::this_thread::sleep_for(std::chrono::duration<double>(params_.get_double("seconds")));
  }
};

// Keeps setup_bytes from setup on; allocates and frees forward_bytes in every forward.
// Output: uniform attention, so that error metrics are defined.
void uniform_attention(const Problem& p, const Tensor4& v, Tensor4& out, const KeyMask& mask) {
  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.heads; ++h) {
      auto vh = v.head(b, h);
      auto oh = out.head(b, h);
      for (Index i = 0; i < p.n_q; ++i) {
        oh.row(i).setZero();
        Index count = 0;
        for (Index j = 0; j < p.n_k; ++j) {
          if (!p.allowed(i, j) || !mask.valid(b, j)) continue;
          oh.row(i) += vh.row(j);
          ++count;
        }
        if (count > 0) oh.row(i) /= float(count);
      }
    }
  }
}

class TestAlloc final : public Attention {
 public:
  TestAlloc(const Problem& p, const ParamSet& params)
      : Attention("test_alloc", p, params),
        kept_(static_cast<std::size_t>(params.get_int("setup_bytes")), 1) {}

 protected:
  void compute(const Tensor4&, const Tensor4&, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    std::vector<char> scratch(static_cast<std::size_t>(params_.get_int("forward_bytes")), 1);
    uniform_attention(problem(), v, out, mask);
    if (!scratch.empty()) out.storage()[0] += 0.0f * float(scratch.back());
  }

 private:
  std::vector<char> kept_;
};

class TestUniform final : public Attention {
 public:
  TestUniform(const Problem& p, const ParamSet& params) : Attention("test_uniform", p, params) {}

 protected:
  void compute(const Tensor4&, const Tensor4&, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    uniform_attention(problem(), v, out, mask);
  }
};

class TestNan final : public Attention {
 public:
  TestNan(const Problem& p, const ParamSet& params) : Attention("test_nan", p, params) {}

 protected:
  void compute(const Tensor4&, const Tensor4&, const Tensor4&, Tensor4& out,
               const KeyMask&) override {
    out.storage().assign(out.storage().size(), std::numeric_limits<float>::quiet_NaN());
  }
};

VariantInfo test_info(const char* summary) {
  VariantInfo info;
  info.summary = summary;
  info.traits.family = "test";
  info.traits.hidden = true;
  info.traits.time_complexity = "O(n_q n_k d_v)";
  info.traits.memory_complexity = "O(1)";
  info.cost = [](const Problem& p, const ParamSet&, int) {
    return Cost{double(p.batch * p.heads) * double(p.n_q) * double(p.n_k) * double(p.d_v), 0.0};
  };
  return info;
}

}  // namespace

ATTNBENCH_REGISTER_VARIANT(test_crash) {
  VariantInfo info = test_info("test double: fails on purpose (harness tests)");
  info.params = {
      ParamSpec::choice("where", "forward", {"setup", "forward"}, "when to fail"),
      ParamSpec::choice("how", "segv", {"segv", "abort", "exit", "bad_alloc", "throw", "invalid"},
                        "how to fail: a signal, exit(3), an exception, or a refusal"),
  };
  info.make = make_factory<TestCrash>();
  return info;
}

ATTNBENCH_REGISTER_VARIANT(test_sleep) {
  VariantInfo info = test_info("test double: sleeps (time-out tests)");
  info.params = {
      ParamSpec::real("seconds", 60.0, 0.0, 3600.0, "how long to sleep"),
      ParamSpec::choice("where", "forward", {"setup", "forward"}, "when to sleep"),
  };
  info.make = make_factory<TestSleep>();
  return info;
}

ATTNBENCH_REGISTER_VARIANT(test_alloc) {
  VariantInfo info = test_info("test double: known allocations, uniform output (memory tests)");
  info.params = {
      ParamSpec::integer("setup_bytes", 0, 0, 1e12, "bytes allocated in setup and kept"),
      ParamSpec::integer("forward_bytes", 0, 0, 1e12, "bytes allocated and freed per forward"),
      ParamSpec::real("analytic_bytes", -1.0, -1.0, 1e18,
                      "analytic memory to report (-1: setup_bytes + forward_bytes)"),
  };
  info.make = make_factory<TestAlloc>();
  info.cost = [](const Problem& p, const ParamSet& s, int) {
    const double analytic = s.get_double("analytic_bytes");
    return Cost{
        double(p.batch * p.heads) * double(p.n_q) * double(p.n_k) * double(p.d_v),
        analytic >= 0 ? analytic : double(s.get_int("setup_bytes") + s.get_int("forward_bytes"))};
  };
  return info;
}

ATTNBENCH_REGISTER_VARIANT(test_uniform) {
  VariantInfo info = test_info("test double: uniform attention over the allowed keys");
  info.make = make_factory<TestUniform>();
  return info;
}

ATTNBENCH_REGISTER_VARIANT(test_nan) {
  VariantInfo info = test_info("test double: outputs NaN");
  info.make = make_factory<TestNan>();
  return info;
}

}  // namespace attnbench
