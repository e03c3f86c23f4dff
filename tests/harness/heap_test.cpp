// Heap accounting at malloc: a known allocation is measured exactly, through every entry point.
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
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

// Called through volatile pointers: the compiler knows the malloc family's semantics and may
// otherwise merge or drop the calls under test.
void* (*volatile g_malloc)(std::size_t) = std::malloc;
void* (*volatile g_calloc)(std::size_t, std::size_t) = std::calloc;
void* (*volatile g_realloc)(void*, std::size_t) = std::realloc;
void* (*volatile g_aligned_alloc)(std::size_t, std::size_t) = std::aligned_alloc;
void* (*volatile g_memalign)(std::size_t, std::size_t) = memalign;
int (*volatile g_posix_memalign)(void**, std::size_t, std::size_t) = posix_memalign;
void (*volatile g_free)(void*) = std::free;

// The counters use malloc_usable_size: the request plus at most glibc's chunk rounding.
void expect_block(std::int64_t delta, void* p, std::size_t request) {
  EXPECT_EQ(delta, std::int64_t(malloc_usable_size(p)));
  EXPECT_GE(std::size_t(delta), request);
  EXPECT_LT(std::size_t(delta), request + 64) << "more than glibc's chunk rounding";
}

TEST_F(HeapTest, MallocAndFreeAreCountedExactly) {
  for (std::size_t request :
       {std::size_t(1), std::size_t(1000), std::size_t(1) << 20, std::size_t(3) << 24}) {
    const std::int64_t before = heap::live_bytes();
    const std::uint64_t calls = heap::allocation_count();
    void* p = g_malloc(request);
    ASSERT_NE(p, nullptr);
    expect_block(heap::live_bytes() - before, p, request);
    EXPECT_EQ(heap::allocation_count() - calls, 1u);
    g_free(p);
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
  void* c = g_calloc(100, 40);
  expect_block(heap::live_bytes() - before, c, 4000);
  c = g_realloc(c, 1 << 16);
  expect_block(heap::live_bytes() - before, c, 1 << 16);
  g_free(c);
  EXPECT_EQ(heap::live_bytes(), before);

  void* a = nullptr;
  ASSERT_EQ(g_posix_memalign(&a, 64, 5000), 0);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 64, 0u);
  EXPECT_EQ(heap::live_bytes() - before, std::int64_t(malloc_usable_size(a)));
  g_free(a);
  a = g_aligned_alloc(256, 4096);
  EXPECT_EQ(heap::live_bytes() - before, std::int64_t(malloc_usable_size(a)));
  g_free(a);
  a = g_memalign(128, 777);
  EXPECT_EQ(heap::live_bytes() - before, std::int64_t(malloc_usable_size(a)));
  g_free(a);
  EXPECT_EQ(heap::live_bytes(), before);

  // operator new and Eigen reach malloc too.
  auto* v = new std::vector<double>(1000);
  EXPECT_GE(heap::live_bytes() - before, std::int64_t(8000));
  delete v;
  {
    // Eigen over-allocates by its alignment and offsets the pointer when that alignment is
    // above malloc's 16 bytes (AVX), so the block is not m.data() itself.
    RowMatrix m(100, 50);
    const std::int64_t delta = heap::live_bytes() - before;
    EXPECT_GE(delta, std::int64_t(100 * 50 * sizeof(float)));
    EXPECT_LT(delta, std::int64_t(100 * 50 * sizeof(float) + 64 + EIGEN_MAX_ALIGN_BYTES));
  }
  EXPECT_EQ(heap::live_bytes(), before);
}

TEST_F(HeapTest, ConcurrentAllocationsBalance) {
  // The figures are read while the threads exist: creating and ending a thread allocates
  // glibc's own per-thread blocks, which are not what is measured here.
  std::atomic<int> ready{0}, finished{0};
  std::atomic<bool> go{false}, leave{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      {
        std::vector<void*> blocks(2000);
        for (int i = 0; i < 2000; ++i) blocks[i] = g_malloc(16 + 8 * ((i * 7 + t) % 300));
        for (void* p : blocks) g_free(p);
      }
      finished.fetch_add(1);
      while (!leave.load()) std::this_thread::yield();
    });
  }
  while (ready.load() < 4) std::this_thread::yield();
  const std::int64_t before = heap::live_bytes();
  go = true;
  while (finished.load() < 4) std::this_thread::yield();
  EXPECT_EQ(heap::live_bytes(), before);
  leave = true;
  for (auto& th : threads) th.join();
}

}  // namespace
}  // namespace attnbench::harness
