// Heap accounting at malloc: a known allocation is measured exactly, through every entry point.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include "attention/tensor.h"
#include "harness/heap.h"
#include "harness/measure.h"

namespace attnbench::harness {
namespace {

class HeapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!heap::accounting_enabled()) GTEST_SKIP() << "malloc is not interposed (sanitizer build)";
    keep_freed_memory_in_process();
  }
};

// The counters use malloc_usable_size: the request plus at most glibc's chunk rounding.
void expect_block(std::int64_t delta, void* p, std::size_t request) {
  EXPECT_EQ(delta, std::int64_t(malloc_usable_size(p)));
  EXPECT_GE(std::size_t(delta), request);
  EXPECT_LT(std::size_t(delta), request + 64) << "more than glibc's chunk rounding";
}

TEST_F(HeapTest, MallocAndFreeAreCountedExactly) {
  for (std::size_t request : {std::size_t(1), std::size_t(1000), std::size_t(1) << 20,
                              std::size_t(3) << 24}) {
    const std::int64_t before = heap::live_bytes();
    const std::uint64_t calls = heap::allocation_count();
    void* p = std::malloc(request);
    ASSERT_NE(p, nullptr);
    expect_block(heap::live_bytes() - before, p, request);
    EXPECT_EQ(heap::allocation_count() - calls, 1u);
    std::free(p);
    EXPECT_EQ(heap::live_bytes(), before) << request;
  }
}

TEST_F(HeapTest, PeakOfAKnownTensorIsItsSize) {
  const std::int64_t before = heap::live_bytes();
  heap::reset_peak();
  std::int64_t inside = 0;
  const float* data = nullptr;
  {
    Tensor4 t(2, 3, 128, 64);  // 196608 bytes in one std::vector<float>
    data = t.data();
    inside = heap::peak_bytes() - before;
    expect_block(inside, const_cast<float*>(data), 2 * 3 * 128 * 64 * sizeof(float));
  }
  EXPECT_EQ(heap::live_bytes(), before);
  EXPECT_EQ(heap::peak_bytes() - before, inside) << "the peak keeps the tensor after its release";
}

TEST_F(HeapTest, EveryEntryPointIsCounted) {
  const std::int64_t before = heap::live_bytes();
  void* c = std::calloc(100, 40);
  expect_block(heap::live_bytes() - before, c, 4000);
  c = std::realloc(c, 1 << 16);
  expect_block(heap::live_bytes() - before, c, 1 << 16);
  std::free(c);
  EXPECT_EQ(heap::live_bytes(), before);

  void* a = nullptr;
  ASSERT_EQ(posix_memalign(&a, 64, 5000), 0);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 64, 0u);
  EXPECT_EQ(heap::live_bytes() - before, std::int64_t(malloc_usable_size(a)));
  std::free(a);
  a = std::aligned_alloc(256, 4096);
  EXPECT_EQ(heap::live_bytes() - before, std::int64_t(malloc_usable_size(a)));
  std::free(a);
  a = memalign(128, 777);
  EXPECT_EQ(heap::live_bytes() - before, std::int64_t(malloc_usable_size(a)));
  std::free(a);
  EXPECT_EQ(heap::live_bytes(), before);

  // operator new and Eigen reach malloc too.
  auto* v = new std::vector<double>(1000);
  EXPECT_GE(heap::live_bytes() - before, std::int64_t(8000));
  delete v;
  {
    RowMatrix m(100, 50);
    expect_block(heap::live_bytes() - before, m.data(), 100 * 50 * sizeof(float));
  }
  EXPECT_EQ(heap::live_bytes(), before);
}

TEST_F(HeapTest, ConcurrentAllocationsBalance) {
  const std::int64_t before = heap::live_bytes();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      std::vector<void*> blocks;
      for (int i = 0; i < 2000; ++i) blocks.push_back(std::malloc(16 + 8 * ((i * 7 + t) % 300)));
      for (void* p : blocks) std::free(p);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(heap::live_bytes(), before);
}

}  // namespace
}  // namespace attnbench::harness
