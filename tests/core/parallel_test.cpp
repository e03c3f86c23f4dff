// attnbench::parallel_for and parallel_invoke (attention/parallel.h): every form visits each index
// exactly once, on more than one thread when it can, and returns only after every task has
// finished.
#include "attention/parallel.h"

#include <gtest/gtest.h>
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/partitioner.h>

#include <atomic>
#include <vector>

namespace attnbench {
namespace {

constexpr int kN = 10007;  // prime, so no grain divides it

void expect_each_once(const std::vector<std::atomic<int>>& hits) {
  for (int i = 0; i < kN; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i;
}

TEST(ParallelFor, RangeFormVisitsEachIndexOnce) {
  std::vector<std::atomic<int>> hits(kN);
  attnbench::parallel_for(tbb::blocked_range<int>(0, kN, 7), [&](const auto& r) {
    for (int i = r.begin(); i < r.end(); ++i) hits[i].fetch_add(1);
  });
  expect_each_once(hits);
}

TEST(ParallelFor, IndexFormsVisitEachIndexOnce) {
  std::vector<std::atomic<int>> hits(kN);
  attnbench::parallel_for(0, kN, [&](int i) { hits[i].fetch_add(1); });
  expect_each_once(hits);
  std::vector<std::atomic<int>> again(kN);
  attnbench::parallel_for(
      0, kN, [&](int i) { again[i].fetch_add(1); }, tbb::static_partitioner());
  expect_each_once(again);
}

TEST(ParallelFor, EmptyRangeRunsNothing) {
  int calls = 0;
  attnbench::parallel_for(5, 5, [&](int) { ++calls; });
  attnbench::parallel_for(tbb::blocked_range<int>(3, 3), [&](const auto&) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ParallelFor, ResultsOfEveryTaskAreVisibleAfterReturn) {
  // Plain (non-atomic) writes by the tasks, read by the caller after the loop.
  std::vector<long> out(kN, -1);
  attnbench::parallel_for(tbb::blocked_range<int>(0, kN, 1), [&](const auto& r) {
    for (int i = r.begin(); i < r.end(); ++i) out[i] = 3L * i;
  });
  for (int i = 0; i < kN; ++i) ASSERT_EQ(out[i], 3L * i);
}

TEST(ParallelInvoke, RunsBothAndNests) {
  std::atomic<int> leaves{0};
  auto tree = [&](auto&& self, int depth) -> void {
    if (depth == 0) {
      leaves.fetch_add(1);
      return;
    }
    attnbench::parallel_invoke([&] { self(self, depth - 1); }, [&] { self(self, depth - 1); });
  };
  tree(tree, 8);
  EXPECT_EQ(leaves.load(), 256);
}

TEST(ParallelFor, RunsOnOneThreadToo) {
  tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
  std::vector<std::atomic<int>> hits(kN);
  attnbench::parallel_for(0, kN, [&](int i) { hits[i].fetch_add(1); });
  expect_each_once(hits);
}

}  // namespace
}  // namespace attnbench
