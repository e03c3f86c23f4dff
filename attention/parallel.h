// Parallel loops over oneTBB whose fork and join ThreadSanitizer can see.
//
// attnbench::parallel_for and attnbench::parallel_invoke forward to their oneTBB namesakes. In a
// build without ThreadSanitizer that is all they do. Under ThreadSanitizer they also declare the
// two happens-before edges of a parallel region: everything the caller did before the loop happens
// before every task, and every task happens before everything the caller does after it. oneTBB
// makes both edges inside libtbb, and Debian's libtbb is not instrumented, so without them TSan
// reports races even in a race-free loop. Races between tasks of one region are still reported: the
// edges order the region against its caller, never tasks against each other.
#pragma once

#include <tbb/parallel_for.h>
#include <tbb/parallel_invoke.h>

#if defined(__SANITIZE_THREAD__)
#define ATTNBENCH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ATTNBENCH_TSAN 1
#endif
#endif

#ifdef ATTNBENCH_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace attnbench {
namespace detail {

// The fork and join edges of one parallel region, as two TSan synchronisation addresses.
class RegionEdges {
 public:
  void fork() { release(&fork_); }   // the caller, before the region starts
  void enter() { acquire(&fork_); }  // every task, first
  void leave() { release(&join_); }  // every task, last
  void join() { acquire(&join_); }   // the caller, after the region ends

 private:
#ifdef ATTNBENCH_TSAN
  static void acquire(char* a) { __tsan_acquire(a); }
  static void release(char* a) { __tsan_release(a); }
#else
  static void acquire(char*) {}
  static void release(char*) {}
#endif
  char fork_ = 0;
  char join_ = 0;
};

// Runs `body` inside the region's edges.
template <class Body>
auto in_region(RegionEdges& edges, const Body& body) {
  return [&edges, &body](auto&&... args) {
    edges.enter();
    body(args...);
    edges.leave();
  };
}

}  // namespace detail

// tbb::parallel_for(range, body).
template <class Range, class Body>
void parallel_for(const Range& range, const Body& body) {
#ifdef ATTNBENCH_TSAN
  detail::RegionEdges edges;
  edges.fork();
  tbb::parallel_for(range, detail::in_region(edges, body));
  edges.join();
#else
  tbb::parallel_for(range, body);
#endif
}

// tbb::parallel_for(first, last, body): body(i) for every i in [first, last).
template <class Int, class Body>
void parallel_for(Int first, Int last, const Body& body) {
#ifdef ATTNBENCH_TSAN
  detail::RegionEdges edges;
  edges.fork();
  tbb::parallel_for(first, last, detail::in_region(edges, body));
  edges.join();
#else
  tbb::parallel_for(first, last, body);
#endif
}

// tbb::parallel_for(first, last, body, partitioner).
template <class Int, class Body, class Partitioner>
void parallel_for(Int first, Int last, const Body& body, Partitioner&& partitioner) {
#ifdef ATTNBENCH_TSAN
  detail::RegionEdges edges;
  edges.fork();
  tbb::parallel_for(first, last, detail::in_region(edges, body), partitioner);
  edges.join();
#else
  tbb::parallel_for(first, last, body, partitioner);
#endif
}

// tbb::parallel_invoke(f, g).
template <class F, class G>
void parallel_invoke(const F& f, const G& g) {
#ifdef ATTNBENCH_TSAN
  detail::RegionEdges edges;
  edges.fork();
  tbb::parallel_invoke(detail::in_region(edges, f), detail::in_region(edges, g));
  edges.join();
#else
  tbb::parallel_invoke(f, g);
#endif
}

}  // namespace attnbench
