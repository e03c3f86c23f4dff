// The malloc family interposed in the attnbench program: every call forwards to glibc's own
// allocator (__libc_malloc, ...) and adds or removes malloc_usable_size() of the block.
// O(1) per call: two relaxed atomic updates and a compare-exchange when the peak rises.
// Eigen allocates through malloc (not operator new), so replacing operator new would miss it.
#include <malloc.h>

#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "harness/heap.h"

extern "C" {
void* __libc_malloc(std::size_t size);
void __libc_free(void* ptr);
void* __libc_calloc(std::size_t n, std::size_t size);
void* __libc_realloc(void* ptr, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
void* __libc_valloc(std::size_t size);
void* __libc_pvalloc(std::size_t size);
}

namespace {

// Constant-initialised: valid before any constructor runs (the loader calls malloc early).
std::atomic<std::int64_t> g_live{0};
std::atomic<std::int64_t> g_peak{0};
std::atomic<std::uint64_t> g_allocations{0};

inline void on_alloc(void* p) {
  if (p == nullptr) return;
  const auto size = static_cast<std::int64_t>(malloc_usable_size(p));
  const std::int64_t now = g_live.fetch_add(size, std::memory_order_relaxed) + size;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  std::int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

inline void on_free(void* p) {
  if (p == nullptr) return;
  g_live.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
}

inline bool is_power_of_two(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

}  // namespace

extern "C" {

void* malloc(std::size_t size) noexcept {
  void* p = __libc_malloc(size);
  on_alloc(p);
  return p;
}

void free(void* ptr) noexcept {
  on_free(ptr);
  __libc_free(ptr);
}

void* calloc(std::size_t n, std::size_t size) noexcept {
  void* p = __libc_calloc(n, size);
  on_alloc(p);
  return p;
}

void* realloc(void* ptr, std::size_t size) noexcept {
  const std::size_t old = ptr ? malloc_usable_size(ptr) : 0;
  void* p = __libc_realloc(ptr, size);
  if (p != nullptr) {
    g_live.fetch_sub(static_cast<std::int64_t>(old), std::memory_order_relaxed);
    on_alloc(p);
  } else if (ptr != nullptr && size == 0) {
    // glibc's realloc(p, 0) frees p and returns null.
    g_live.fetch_sub(static_cast<std::int64_t>(old), std::memory_order_relaxed);
  }
  return p;
}

// glibc's reallocarray calls its internal realloc directly, so it must be interposed too or
// the block would change size behind the counters.
void* reallocarray(void* ptr, std::size_t n, std::size_t size) noexcept {
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(n, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc(ptr, bytes);
}

void* memalign(std::size_t alignment, std::size_t size) noexcept {
  void* p = __libc_memalign(alignment, size);
  on_alloc(p);
  return p;
}

void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
  if (!is_power_of_two(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return memalign(alignment, size);
}

int posix_memalign(void** out, std::size_t alignment, std::size_t size) noexcept {
  if (!is_power_of_two(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  on_alloc(p);
  *out = p;
  return 0;
}

void* valloc(std::size_t size) noexcept {
  void* p = __libc_valloc(size);
  on_alloc(p);
  return p;
}

void* pvalloc(std::size_t size) noexcept {
  void* p = __libc_pvalloc(size);
  on_alloc(p);
  return p;
}

}  // extern "C"

namespace attnbench::heap {

bool accounting_enabled() { return true; }
std::int64_t live_bytes() { return g_live.load(std::memory_order_relaxed); }
std::int64_t peak_bytes() { return g_peak.load(std::memory_order_relaxed); }
void reset_peak() {
  g_peak.store(g_live.load(std::memory_order_relaxed), std::memory_order_relaxed);
}
std::uint64_t allocation_count() { return g_allocations.load(std::memory_order_relaxed); }

}  // namespace attnbench::heap
