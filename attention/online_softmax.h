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
#pragma once

#include <limits>

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

}  // namespace attnbench
