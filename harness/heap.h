// Heap accounting at malloc: live bytes, their peak and the allocation count, kept by the
// interposed malloc family (malloc_hooks.cpp) of the attnbench program.
// O(1) per allocation (relaxed atomics); no memory of its own.
// Sizes are malloc_usable_size() of each block, counted at allocation and at release alike, so
// live bytes return exactly to their baseline when every block is freed.
#pragma once

#include <cstdint>

namespace attnbench::heap {

// False in builds without the interposer (sanitizer builds, whose runtime owns malloc): every
// figure below is then 0 and the harness records memory counted at malloc as null.
bool accounting_enabled();

// Bytes in live blocks allocated through the malloc family.
std::int64_t live_bytes();
// Largest live_bytes() since the last reset_peak() (or since the start).
std::int64_t peak_bytes();
// Starts a new peak window at the current live bytes.
void reset_peak();
// Calls that returned a new block (malloc, calloc, realloc, memalign, ...) since the start.
std::uint64_t allocation_count();

}  // namespace attnbench::heap
