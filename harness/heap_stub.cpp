// Heap accounting when the malloc family is not interposed (sanitizer builds: AddressSanitizer
// owns malloc, and forwarding to glibc behind its back would mix two allocators).
#include "harness/heap.h"

namespace attnbench::heap {

bool accounting_enabled() { return false; }
std::int64_t live_bytes() { return 0; }
std::int64_t peak_bytes() { return 0; }
void reset_peak() {}
std::uint64_t allocation_count() { return 0; }

}  // namespace attnbench::heap
