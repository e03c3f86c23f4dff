// The Attention interface every variant implements.
//
// Construction is the *setup*: validate the parameters against the problem, draw all
// randomness from the seed (per head), precompute, and allocate workspaces. forward() is the
// *query*, the call the harness times; it must not allocate in steady state (first-touch page
// faults cost 10-40 us per 4 KiB page on virtual machines and would dominate the figures).
#pragma once

#include <tbb/task_arena.h>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "attention/params.h"
#include "attention/problem.h"
#include "attention/tensor.h"

namespace attnbench {

class Attention {
 public:
  Attention(std::string name, const Problem& problem, ParamSet params);
  virtual ~Attention() = default;
  Attention(const Attention&) = delete;
  Attention& operator=(const Attention&) = delete;

  // q [batch, heads, n_q, d], k [batch, heads, n_k, d], v [batch, heads, n_k, d_v]
  //   -> out [batch, heads, n_q, d_v]. `mask` is empty, or [batch, n_k] when the problem was set
  // up with key_padding. Shapes are checked (std::invalid_argument); then compute() runs.
  void forward(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask = KeyMask());

  const std::string& name() const { return name_; }
  const Problem& problem() const { return problem_; }
  // Every parameter value actually used, auto parameters filled in.
  const Json& resolved_params() const { return params_.json(); }
  const ParamSet& params() const { return params_; }

  // Variant-specific figures recorded with each result (e.g. a pseudo-inverse residual, the
  // number of computed tiles). Called after forward().
  virtual Json diagnostics() const { return Json::object(); }

 protected:
  virtual void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
                       const KeyMask& mask) = 0;

  // Throws std::invalid_argument "<name>: parameter '<key>' = <value>, expected <what>".
  [[noreturn]] void reject(const std::string& key, const Json& value,
                           const std::string& expected) const;

  ParamSet params_;

 private:
  std::string name_;
  Problem problem_;
};

// One head's inputs: q (n_q, d), k (n_k, d), v (n_k, d_v); key_valid is empty or has n_k
// entries (nonzero = real key).
struct HeadInput {
  ConstMatMap q;
  ConstMatMap k;
  ConstMatMap v;
  std::span<const std::uint8_t> key_valid;
  Index batch_index;
  Index head;
};

// Helper base: a variant writes only forward_head(), which runs over (batch, head) pairs in
// parallel with oneTBB. forward_head must be safe to call concurrently for different heads.
class HeadwiseAttention : public Attention {
 public:
  using Attention::Attention;

 protected:
  virtual void forward_head(const HeadInput& in, MatMap out) = 0;
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override;
};

// Per-thread workspaces allocated in setup. local() returns the slot of the calling oneTBB
// worker, so forward() reuses memory touched before and pays no page faults. The pool is sized
// for the arena current at construction; the harness constructs and runs variants under the
// same thread setting.
template <typename T>
class WorkspacePool {
 public:
  WorkspacePool() = default;
  template <typename Make>
  explicit WorkspacePool(Make make) {
    const int slots = tbb::this_task_arena::max_concurrency();
    slots_.reserve(slots);
    for (int i = 0; i < slots; ++i) slots_.push_back(make());
  }
  T& local() {
    const int slot = tbb::this_task_arena::current_thread_index();
    if (slot < 0 || slot >= static_cast<int>(slots_.size())) {
      throw std::logic_error("WorkspacePool: thread slot " + std::to_string(slot) +
                             " outside the pool of " + std::to_string(slots_.size()) +
                             " (forward called with more threads than at setup)");
    }
    return slots_[slot];
  }
  std::size_t size() const { return slots_.size(); }

 private:
  std::vector<T> slots_;
};

}  // namespace attnbench
