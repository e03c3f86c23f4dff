// The Attention interface every variant implements.
//
// Construction is the *setup*: validate the parameters against the problem, draw all
// randomness from the seed (per head), precompute, and allocate workspaces. forward() is the
// *query*, the call the harness times; it must not allocate in steady state (first-touch page
// faults cost 10-40 us per 4 KiB page on virtual machines and would dominate the figures).
#pragma once

#include <tbb/task_arena.h>
#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
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

// Per-thread workspaces allocated in setup, so forward() reuses memory touched before and pays
// no page faults. Two ways to use it:
//  - local(): the slot of the calling oneTBB worker (the pool has one slot per arena thread).
//    Right for kernels that parallelise inside forward() and need scratch per task.
//  - acquire(): a slot leased for the lifetime of the returned object, from a pool of
//    min(threads, max_users) slots. Right for large per-head scratch (a score matrix) when fewer
//    heads than threads run: one head on two threads needs one matrix, not two.
// The pool is sized for the arena current at construction; the harness constructs and runs
// variants under the same thread setting.
template <typename T>
class WorkspacePool {
 public:
  class Lease {
   public:
    Lease(WorkspacePool* pool, int slot) : pool_(pool), slot_(slot) {}
    Lease(Lease&& other) noexcept : pool_(other.pool_), slot_(other.slot_) {
      other.pool_ = nullptr;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_) pool_->release(slot_);
    }
    T& operator*() const { return pool_->slots_[slot_]; }
    T* operator->() const { return &pool_->slots_[slot_]; }

   private:
    WorkspacePool* pool_;
    int slot_;
  };

  WorkspacePool() = default;
  template <typename Make>
  explicit WorkspacePool(Make make, Index max_users = std::numeric_limits<int>::max()) {
    const int threads = tbb::this_task_arena::max_concurrency();
    const int slots = static_cast<int>(std::min<Index>(threads, std::max<Index>(1, max_users)));
    slots_.reserve(slots);
    free_.reserve(slots);
    for (int i = 0; i < slots; ++i) {
      slots_.push_back(make());
      free_.push_back(slots - 1 - i);
    }
    per_thread_ = slots == threads;
  }
  WorkspacePool(WorkspacePool&& other) noexcept
      : slots_(std::move(other.slots_)),
        free_(std::move(other.free_)),
        per_thread_(other.per_thread_) {}
  // Setup may build a pool and assign it; never while leases are out (the mutex stays).
  WorkspacePool& operator=(WorkspacePool&& other) noexcept {
    slots_ = std::move(other.slots_);
    free_ = std::move(other.free_);
    per_thread_ = other.per_thread_;
    return *this;
  }

  T& local() {
    const int slot = tbb::this_task_arena::current_thread_index();
    if (!per_thread_ || slot < 0 || slot >= static_cast<int>(slots_.size())) {
      throw std::logic_error("WorkspacePool: thread slot " + std::to_string(slot) +
                             " outside the pool of " + std::to_string(slots_.size()) +
                             " (forward called with more threads than at setup?)");
    }
    return slots_[slot];
  }

  Lease acquire() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (free_.empty()) {
      throw std::logic_error("WorkspacePool: all " + std::to_string(slots_.size()) +
                             " slots in use (forward called with more threads than at setup?)");
    }
    const int slot = free_.back();
    free_.pop_back();
    return Lease(this, slot);
  }

  std::size_t size() const { return slots_.size(); }

 private:
  void release(int slot) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(slot);  // capacity reserved in setup: never allocates
  }
  std::vector<T> slots_;
  std::vector<int> free_;
  std::mutex mutex_;
  bool per_thread_ = false;
};

}  // namespace attnbench
