// Shared helpers of the sparse family's pattern constructors (see patterns.h).
// Setup only: nothing here runs in forward.
// Child et al. 2019; Beltagy et al. 2020; Zaheer et al. 2020.
#include "variants/sparse/patterns.h"

#include <stdexcept>

namespace attnbench::sparse {

void reject_param(const std::string& variant, const std::string& key, const Json& value,
                  const std::string& expected, const Problem& p) {
  throw std::invalid_argument(variant + ": parameter '" + key + "' = " + value.dump() +
                              ", expected " + expected + " (" + p.to_string() + ")");
}

Index block_for_band(Index extent) {
  // A band of `extent` keys per row in b-wide tiles computes about extent + 2b scores per row:
  // keep the masked share near or below a quarter. Measured per-score cost barely rises from
  // 64-row to 16-row tiles, because the softmax's exp, not the GEMM, dominates the tile.
  if (extent >= 6 * kBlockSparseTile) return kBlockSparseTile;
  if (extent >= 96) return 32;
  return 16;
}

Index block_for_segments(Index segment) {
  if (segment % kBlockSparseTile == 0) return kBlockSparseTile;
  if (segment >= 16 && segment <= 2 * kBlockSparseTile) return segment;
  // Short segments: several whole segments per block (their blocks become bands or bitmasks).
  if (segment < 16) return (kBlockSparseTile / segment) * segment;
  return kBlockSparseTile;
}

}  // namespace attnbench::sparse
