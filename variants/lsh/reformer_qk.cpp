// Reformer LSH attention with separate Q and K hashed by the same rotations, sorted separately.
// Time O(H n ((1 + before + after) c (d + d_v) + d sqrt(nb))), memory O(n (H + d + d_v)).
// Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", ICLR 2020 (separate-QK form).
#include "attention/registry.h"
#include "variants/lsh/lsh.h"

namespace attnbench {

ATTNBENCH_REGISTER_VARIANT(reformer_qk) {
  VariantInfo info;
  info.summary =
      "Reformer LSH attention with separate Q and K hashed by the same rotations; error vs plain "
      "softmax";
  info.paper = "Kitaev, Kaiser, Levskaya, Reformer: The Efficient Transformer, ICLR 2020";
  info.traits.family = "lsh";
  info.traits.exact = false;
  // Chunk membership comes from the global sort of keys, so the keys after a query move the
  // earlier keys between chunks: no causal form whose output ignores later keys (README).
  info.traits.causal = false;
  info.traits.randomized = true;
  info.traits.deterministic = true;
  info.traits.reference = ReferenceKind::kSoftmax;
  info.traits.time_complexity = "O(H n ((1 + before + after) c (d + d_v) + d sqrt(nb)))";
  info.traits.memory_complexity =
      "O(n (H + d + d_v)) per head in flight (heads in flight = threads) + O((1 + before + after) "
      "c (c + d + d_v)) per thread";
  info.params = lsh::param_specs(/*shared_qk=*/false);
  info.make = [](const Problem& p, const ParamSet& s) { return lsh::make_attention(p, s, false); };
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    return lsh::cost(p, s, threads, false);
  };
  return info;
}

}  // namespace attnbench
