// Reformer LSH attention, the machinery shared by `reformer` (shared QK) and `reformer_qk`
// (separate Q and K hashed with the same rotations): angular hashing, the per-round counting
// sort, the chunk visibility rule and the duplicate-count rule (reference/variants.md §4).
//
// The pieces are public so tests can rebuild exactly what the variant sees: the rotations of a
// head, the buckets of every token, the sorted order of every round, and each query's visible
// keys, from which the union-of-buckets reference is built.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attention/registry.h"
#include "attention/tensor.h"

namespace attnbench::lsh {

// How the buckets are hashed. One factor: argmax over [xR; -xR] with R of factor/2 columns.
// Several factors (trax's factorised hash): bucket = h_0 + f_0 (h_1 + f_1 (...)), each h_k an
// argmax over its own slice of the rotation, so the rotation has sum(f_k)/2 columns instead of
// n_buckets/2 and hashing stays O(n d sqrt(n_buckets)).
struct BucketPlan {
  Index n_buckets = 2;          // product of the factors
  std::vector<Index> factors;   // each even
  Index rotation_cols() const;  // sum(factors) / 2
  std::string to_string() const;
};

// Buckets above this count are factorised (trax's threshold).
inline constexpr Index kFactoriseAbove = 128;

// trax's automatic rule: n_buckets = 2 max(1, n_chunks); above 128 factorised as
// f1 = 2^ceil(log2 sqrt(nb)), f2 = 2 floor(nb / (2 f1)), so the product can be below 2 n_chunks.
BucketPlan auto_buckets(Index n_chunks);
// An explicit even count: one factor up to 128; above, the exact factorisation f1 f2 = nb with
// both even and f1 closest to sqrt(nb); unfactorised (cost O(n d nb)) when nb is not a
// multiple of 4.
BucketPlan explicit_buckets(Index n_buckets);

struct Config {
  Index n = 0;  // tokens (n_q = n_k)
  Index d = 0;
  Index n_hashes = 4;
  Index chunk = 64;
  Index chunks_before = 1;
  Index chunks_after = 0;
  bool shared_qk = true;
  bool dup_correction = true;
  bool global_lookback = false;  // compat: look-back wraps over the concatenation of all rounds
  bool causal = false;
  std::uint64_t seed = 0;
  BucketPlan buckets;

  Index n_chunks() const { return (n + chunk - 1) / chunk; }
  Index n_pad() const { return n_chunks() * chunk; }
  // Chunk indices wrap modulo this: n_chunks per round, or n_hashes n_chunks with global
  // look-back.
  Index wrap() const { return global_lookback ? n_hashes * n_chunks() : n_chunks(); }
  // Distinct chunks a query chunk sees: min(before + after + 1, wrap()).
  Index visible_chunk_count() const;
};

// Config of a variant from the problem and its resolved parameters (auto values derived as in
// the parameter docs). Does not validate; LshAttention's constructor does.
Config make_config(const Problem& p, const ParamSet& params, bool shared_qk);

// The parameter specs of the family (`shared_qk` only for the shared-QK variant).
std::vector<ParamSpec> param_specs(bool shared_qk);

// Random rotations of one head, (d, n_hashes * rotation_cols): round r owns columns
// [r cols, (r + 1) cols) and is drawn from Rng(seed, head, r) with N(0, 1) entries (not
// orthogonalised, as in both reference codes), so adding rounds leaves earlier rounds unchanged.
RowMatrix draw_rotations(const Config& cfg, Index head);

// Buckets of every row of x (n, d) in every round: buckets[i * n_hashes + r]. u = x R_r; per
// factor the bucket is the argmax over [u, -u] of its slice of u, ties to the lowest index.
// The variant hashes with the same code, tile by tile.
std::vector<std::int32_t> hash_all(ConstMatRef x, const RowMatrix& rotations, const Config& cfg);

// Stable counting sort of one round by (bucket, position), linear in n + n_buckets.
// buckets[i * stride] is token i's bucket (i < n). Writes perm[p] = token at sorted slot p for
// p < n_pad (slots n..n_pad-1 hold the padding dummies n..n_pad-1, which sort last as if in an
// extra bucket) and slot[i] = sorted slot of token i (i < n). counts: n_buckets ints of scratch.
void sort_round(const std::int32_t* buckets, Index stride, Index n, Index n_buckets, Index n_pad,
                std::int32_t* counts, std::int32_t* perm, std::int32_t* slot);

// The (round, chunk) pairs query chunk t of round r sees, distinct, in order of offset
// -before..after. Per-round look-back wraps t + o modulo n_chunks inside round r; global
// look-back wraps r n_chunks + t + o modulo n_hashes n_chunks, reaching into other rounds.
std::vector<std::pair<Index, Index>> visible_chunks(const Config& cfg, Index r, Index t);

// The count rule, on the chunk indices of a query and a key in the same round: whether the key's
// chunk is one the query's chunk sees, with differences taken modulo wrap(). Per-round this is
// the visibility rule itself; with global look-back it reproduces the reference codes' count,
// which misses pairs seen only through the cross-round wrap (they get count 0).
bool counted(const Config& cfg, Index query_chunk, Index key_chunk);

// Everything the variant computes before attention, for one head, rebuilt for tests.
struct Layout {
  Config cfg;
  RowMatrix rotations;
  std::vector<std::int32_t> q_buckets, k_buckets;         // n * n_hashes, token-major
  std::vector<std::vector<std::int32_t>> q_perm, k_perm;  // per round, n_pad
  std::vector<std::vector<std::int32_t>> q_slot, k_slot;  // per round, n

  // Key tokens query i sees in round r, padding dummies dropped, no mask applied; with global
  // look-back a token can appear twice (once from each round's chunk).
  std::vector<Index> visible_keys(Index r, Index i) const;
  // cnt_ij of the duplicate correction: rounds whose count rule counts the pair.
  Index pair_count(Index i, Index j) const;
};

// q, k: one head (n, d); k is ignored for shared QK (queries are hashed as keys).
Layout make_layout(ConstMatRef q, ConstMatRef k, const Config& cfg, Index head);

// Analytic cost (flops, peak extra bytes) of a forward, shared by both variants' registrations.
Cost cost(const Problem& p, const ParamSet& params, int threads, bool shared_qk);

// Construct the attention (validates parameters against the problem).
std::unique_ptr<Attention> make_attention(const Problem& p, const ParamSet& params, bool shared_qk);

}  // namespace attnbench::lsh
