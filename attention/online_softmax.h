// The tiled online softmax (FlashAttention, reference/variants.md §2.2), shared by `flash` and
// the block-sparse kernel: a query tile of br rows keeps a running max m, running sum l and an
// unnormalised accumulator acc (br, d_v) while key tiles stream past.
//
//   score_tile:  S = scale * Q_tile K_tile^T                     (br, bc)
//   (caller masks S: excluded entries set to -inf)
//   update:      m' = max(m, rowmax S); P = exp(S - m'); a = exp(m - m');
//                l = a l + rowsum P; acc = a acc + P V_tile; m = m'
//   finish:      out = acc / l, and 0 for rows that saw no allowed key (never NaN)
//
// A row whose running max is still -inf after masking uses 0 as its reference, so
// exp(-inf - (-inf)) is never evaluated (FlashAttention's Check_inf guard).
//
// Two interfaces compute this:
//   * the tile functions below (score_tile, online_softmax_update, online_softmax_finish on a
//     SoftmaxTile): simple and general, the caller owns the buffers and masks S itself;
//   * FlashTile (further below): the fused, register-blocked SIMD kernel with its own workspace,
//     about 3x faster; masks are described (band, key validity, element predicate) rather than
//     written into S. Use it for anything timed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>

#include "attention/tensor.h"

namespace attnbench {

inline constexpr float kNegInfF = -std::numeric_limits<float>::infinity();

// Running state of one query tile. Row-major, row strides given.
struct SoftmaxTile {
  float* m;    // (br)
  float* l;    // (br)
  float* acc;  // (br, d_v), stride ld_acc
  Index ld_acc;
  Index br;
  Index d_v;

  void reset();
};

// q (br, d) stride ldq; k (bc, d) stride ldk -> s (br, bc) stride lds, s = scale * q k^T.
void score_tile(const float* q, Index ldq, Index br, const float* k, Index ldk, Index bc, Index d,
                float scale, float* s, Index lds);

// Folds the masked scores s (br, bc) and values v (bc, d_v) stride ldv into the tile state.
// s is overwritten with the unnormalised probabilities.
void online_softmax_update(SoftmaxTile& tile, float* s, Index lds, Index bc, const float* v,
                           Index ldv);

// out (br, d_v) stride ld_out = acc / l; rows with l == 0 get zeros. Also writes lse if given.
void online_softmax_finish(const SoftmaxTile& tile, float* out, Index ld_out, float* lse = nullptr);

// ---------------------------------------------------------------------------------------------
// FlashTile: the fused tile kernel.
//
// Computes the same online softmax with the score tile held transposed, S^T = K_tile (scale Q)^T
// (keys x queries), so that
//   * neither K nor V is ever packed: both GEMMs broadcast from rows of K and of P^T and stream
//     rows of V straight from the inputs; only the query tile is transposed (and pre-scaled) once
//     in begin(), which is amortised over every key tile;
//   * the per-query softmax (max, exp, sum, rescale factor) runs down columns, i.e. elementwise
//     across vectors of queries, with no horizontal reductions;
//   * the rescale acc = alpha acc is folded into the P V micro-kernel's accumulator load.
// Register-blocked micro-kernels for AVX-512, AVX2+FMA, and a portable scalar fallback (see
// attention/kernels/simd.h); exp is a vectorised polynomial (few ulp; results below FLT_MIN
// flush to 0, which cannot change a softmax row whose largest term is 1).
//
// Use (one FlashTile per thread, built in setup; forward never allocates):
//   FlashTile ft(block_q, block_k, d, d_v);          // workspace for tiles up to that size
//   ft.begin(q + i0 * ldq, ldq, br, scale);          // query rows [i0, i0 + br)
//   for each key tile [j0, j0 + bc) that may contribute:
//     ft.add_keys(k + j0 * ldk, ldk, v + j0 * ldv, ldv, bc, mask);
//   ft.finish(out + i0 * ld_out, ld_out, lse);       // acc / l, zeros for rows that saw no key
//
// Key tiles may arrive in any order and with any sizes up to block_k (a block-sparse layout
// passes only its nonzero blocks). Results depend only on the order of add_keys calls, so they
// are bitwise reproducible for any thread count.

// Instruction set of the fused kernel. kAvx2Pair runs the AVX-512 register geometry (16 lanes)
// on pairs of AVX2 registers: it is slower than kAvx2 and exists so tests exercise the 16-lane
// code paths on machines without AVX-512.
enum class KernelIsa { kPortable, kAvx2, kAvx2Pair, kAvx512 };

const char* to_string(KernelIsa isa);
// Whether `isa` was compiled in (the build targets the host: -march=native).
bool kernel_isa_available(KernelIsa isa);
// The fastest available: kAvx512, else kAvx2, else kPortable.
KernelIsa best_kernel_isa();

// Which (query r, key c) pairs of a tile are allowed, in tile-local coordinates (r in [0, br),
// c in [0, bc)). A pair is allowed iff all three hold:
//   band:      diag_min <= c - r <= diag_max. Causal attention with bottom-right alignment for
//              a query tile starting at i0 and a key tile starting at j0 is
//              diag_max = i0 + (n_k - n_q) - j0; a sliding window of half-width w adds
//              diag_min = i0 - j0 - w. The kernel skips register blocks and key ranges the band
//              excludes entirely, so a diagonal tile costs about half a full one.
//   key_valid: nullptr, or bc flags (nonzero = key allowed), e.g. key padding.
//   allowed:   nullptr, or a predicate allowed(ctx, r, c) evaluated for every pair of the tile
//              (slow: for irregular patterns on the few tiles that need it).
// A row with no allowed key in any tile outputs zeros.
struct TileMask {
  static constexpr Index kUnbounded = std::numeric_limits<Index>::max() / 4;
  Index diag_min = -kUnbounded;
  Index diag_max = kUnbounded;
  const std::uint8_t* key_valid = nullptr;
  bool (*allowed)(const void* ctx, Index r, Index c) = nullptr;
  const void* ctx = nullptr;
};

class FlashTile {
 public:
  // Workspace for query tiles of up to max_br rows and key tiles of up to max_bc keys, head
  // dims d (q, k) and d_v (v, out). Allocates and touches every page here, never later.
  // Throws std::invalid_argument if a size is < 1 or `isa` is not available.
  FlashTile(Index max_br, Index max_bc, Index d, Index d_v, KernelIsa isa = best_kernel_isa());
  ~FlashTile();
  FlashTile(FlashTile&&) noexcept;
  FlashTile& operator=(FlashTile&&) noexcept;

  // Bytes the constructor allocates (for analytic memory models).
  static std::size_t workspace_bytes(Index max_br, Index max_bc, Index d, Index d_v,
                                     KernelIsa isa = best_kernel_isa());

  // Starts a query tile: q (br, d) stride ldq, logits scale * q.k. br in [1, max_br].
  void begin(const float* q, Index ldq, Index br, float scale);
  // Folds one key tile: k (bc, d) stride ldk, v (bc, d_v) stride ldv, bc in [1, max_bc].
  void add_keys(const float* k, Index ldk, const float* v, Index ldv, Index bc,
                const TileMask& mask = TileMask());
  // Folds n consecutive keys in tiles of at most tile_keys (<= max_bc). key_valid: nullptr, or n
  // flags (nonzero = allowed); tiles with no allowed key are skipped.
  void add_key_range(const float* k, Index ldk, const float* v, Index ldv, Index n, Index tile_keys,
                     const std::uint8_t* key_valid = nullptr);
  // out (br, d_v) stride ld_out = acc / l; rows with l == 0 get zeros. lse (br) if given:
  // m + log l, or -inf for rows that saw no key.
  void finish(float* out, Index ld_out, float* lse = nullptr) const;

  KernelIsa isa() const;

 private:
  struct Impl;
  template <typename F>
  void dispatch(F&& f);
  std::unique_ptr<Impl> impl_;
};

}  // namespace attnbench
