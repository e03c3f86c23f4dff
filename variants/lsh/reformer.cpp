// Reformer LSH attention, shared QK (keys = normalised queries): hashed, sorted, chunked rounds.
// Time O(H n ((1 + before + after) c (d + d_v) + d sqrt(nb))), memory O(n (H + d + d_v)).
// Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", ICLR 2020.
#include "attention/registry.h"
#include "variants/lsh/lsh.h"

namespace attnbench {

ATTNBENCH_REGISTER_VARIANT(reformer) {
  VariantInfo info;
  info.summary =
      "Reformer LSH attention, shared QK (keys = normalised queries, self only when alone): "
      "H rounds of angular hashing, sort, chunked attention, rounds combined by log-sum-exp";
  info.paper = "Kitaev, Kaiser, Levskaya, Reformer: The Efficient Transformer, ICLR 2020";
  info.traits.family = "lsh";
  info.traits.exact = false;
  info.traits.randomized = true;
  info.traits.deterministic = true;
  info.traits.reference = ReferenceKind::kSharedQkSoftmax;
  info.traits.time_complexity = "O(H n ((1 + before + after) c (d + d_v) + d sqrt(nb)))";
  info.traits.memory_complexity =
      "O(n (H + d + d_v)) per head in flight (heads in flight = threads) + O((1 + before + after) "
      "c (c + d + d_v)) per thread";
  info.params = lsh::param_specs(/*shared_qk=*/true);
  info.make = [](const Problem& p, const ParamSet& s) { return lsh::make_attention(p, s, true); };
  info.cost = [](const Problem& p, const ParamSet& s, int threads) {
    return lsh::cost(p, s, threads, true);
  };
  return info;
}

}  // namespace attnbench
