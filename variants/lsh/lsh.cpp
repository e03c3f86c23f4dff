// Reformer LSH attention, shared by `reformer` (shared QK) and `reformer_qk` (separate QK).
// Time O(H n ((1 + before + after) c (d + d_v) + d sqrt(nb))), memory O(n (H + d + d_v)).
// Kitaev, Kaiser, Levskaya, "Reformer: The Efficient Transformer", ICLR 2020.
//
// Per head: hash every token in every round (rotation tiles through a small GEMM), counting-sort
// each round by (bucket, position), then for each round, in parallel over chunks, attend each
// query chunk to its visible key chunks and fold the result into a running log-sum-exp per row,
// so rounds combine exactly as o = sum_r w_r o_r with w_r = exp(lse_r - logsumexp lse).
#include "variants/lsh/lsh.h"

#include <tbb/blocked_range.h>
#include <tbb/task_arena.h>
#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/attention.h"
#include "attention/parallel.h"
#include "attention/random.h"
#include "variants/lsh/lsh_kernels.h"

namespace attnbench::lsh {

using kernels::kNr;
using kernels::round_up;

// ---------------------------------------------------------------------------------------------
// Buckets, config, parameters

Index BucketPlan::rotation_cols() const {
  Index cols = 0;
  for (Index f : factors) cols += f / 2;
  return cols;
}

std::string BucketPlan::to_string() const {
  std::string s = std::to_string(n_buckets);
  if (factors.size() > 1) {
    s += " =";
    for (std::size_t i = 0; i < factors.size(); ++i) {
      s += (i ? " x " : " ") + std::to_string(factors[i]);
    }
  }
  return s;
}

BucketPlan auto_buckets(Index n_chunks) {
  const Index nb = 2 * std::max<Index>(1, n_chunks);
  if (nb <= kFactoriseAbove) return {nb, {nb}};
  // trax: f1 = 2^ceil(log2 sqrt(nb)), the smallest power of two whose square reaches nb.
  Index f1 = 1;
  while (f1 * f1 < nb) f1 *= 2;
  const Index f2 = 2 * (nb / (2 * f1));
  return {f1 * f2, {f1, f2}};
}

BucketPlan explicit_buckets(Index nb) {
  if (nb <= kFactoriseAbove || nb % 4 != 0) return {nb, {nb}};
  // The even divisor f1 >= sqrt(nb) closest to it whose cofactor is even (f1 = nb / 2 always
  // qualifies).
  Index f1 = 2;
  while (f1 * f1 < nb) f1 += 2;
  while (nb % f1 != 0 || (nb / f1) % 2 != 0) f1 += 2;
  return {nb, {f1, nb / f1}};
}

Index Config::visible_chunk_count() const {
  return std::min(chunks_before + chunks_after + 1, wrap());
}

std::vector<ParamSpec> param_specs(bool shared_qk) {
  std::vector<ParamSpec> specs = {
      ParamSpec::integer("n_hashes", 4, 1, 64,
                         "hash rounds H; each round hashes, sorts and attends on its own and the "
                         "rounds are combined by their log-sum-exp"),
      ParamSpec::integer(
          "n_buckets", nullptr, 2, 1 << 24,
          "buckets per round nb, even (argmax over [xR; -xR] gives antipodal pairs); above 128 "
          "hashed as a product of two even factors (trax's factorised hash) so hashing stays "
          "O(n d sqrt(nb))",
          "2 max(1, ceil(n / chunk)) as in trax (a chunk is twice the mean bucket); above 128 "
          "factorised as f1 = 2^ceil(log2 sqrt(nb)), f2 = 2 floor(nb / (2 f1)), and the product "
          "f1 f2 is used and reported"),
      ParamSpec::integer("chunk", nullptr, 1, 1 << 24,
                         "chunk length c of the sorted order; n is padded to a multiple of c with "
                         "excluded dummy tokens",
                         "64 (reformer-pytorch's bucket_size), clipped to n"),
      ParamSpec::integer("chunks_before", 1, 0, 1 << 24,
                         "chunks before its own that a query chunk sees (wrapping inside the "
                         "round)"),
      ParamSpec::integer("chunks_after", 0, 0, 1 << 24,
                         "chunks after its own that a query chunk sees (wrapping inside the "
                         "round)"),
      ParamSpec::boolean("dup_correction", true,
                         "subtract log(count) from a pair's logit at each of its occurrences, "
                         "count = rounds in which the pair is visible, so the output is exact "
                         "softmax over the union of the rounds' visible sets (off: a pair seen in "
                         "k rounds weighs k times, as reformer-pytorch's default)"),
      ParamSpec::boolean("compat_global_lookback", false,
                         "reproduce trax / reformer-pytorch: look-back wraps over the "
                         "concatenation of all rounds, so a round's first chunk sees the previous "
                         "round's last chunk, and the duplicate count misses those pairs (count 0 "
                         "-> logit - log(1e-9), as in the reference code); for comparisons only"),
      ParamSpec::integer("seed", 0, 0, 9007199254740991.0,
                         "seed of the random rotations (drawn per head and round, shared across "
                         "the batch)"),
  };
  if (shared_qk) {
    specs.insert(specs.begin() + 5,
                 ParamSpec::boolean("shared_qk", true,
                                    "keys are the normalised queries (Reformer); must be true "
                                    "here: separate Q and K is the variant `reformer_qk`, whose "
                                    "error is measured against plain softmax"));
  }
  return specs;
}

Config make_config(const Problem& p, const ParamSet& s, bool shared_qk) {
  Config c;
  c.n = p.n_k;
  c.d = p.d;
  c.n_hashes = s.get_int("n_hashes");
  c.chunk = s.is_auto("chunk") ? std::min<Index>(64, std::max<Index>(1, c.n)) : s.get_int("chunk");
  c.chunk = std::max<Index>(1, c.chunk);
  c.chunks_before = s.get_int("chunks_before");
  c.chunks_after = s.get_int("chunks_after");
  c.shared_qk = shared_qk;
  c.dup_correction = s.get_bool("dup_correction");
  c.global_lookback = s.get_bool("compat_global_lookback");
  c.causal = p.causal;
  c.seed = static_cast<std::uint64_t>(s.get_int("seed"));
  c.buckets = s.is_auto("n_buckets") ? auto_buckets(c.n_chunks())
                                     : explicit_buckets(s.get_int("n_buckets"));
  return c;
}

// ---------------------------------------------------------------------------------------------
// Rotations, hashing, sorting, visibility

RowMatrix draw_rotations(const Config& cfg, Index head) {
  const Index cols = cfg.buckets.rotation_cols();
  RowMatrix r(cfg.d, cfg.n_hashes * cols);
  for (Index round = 0; round < cfg.n_hashes; ++round) {
    Rng rng(cfg.seed, static_cast<std::uint64_t>(head), static_cast<std::uint64_t>(round));
    for (Index i = 0; i < cfg.d; ++i) {
      for (Index c = 0; c < cols; ++c) r(i, round * cols + c) = static_cast<float>(rng.normal());
    }
  }
  return r;
}

namespace {

constexpr Index kHashTile = 64;  // rows per hashing GEMM

// argmax over [u, -u] (2 m entries), ties to the lowest index. The maximum of [u, -u] is
// M = max |u_k|; its first position is the first k with u_k = M if there is one (the first half
// comes first), else m + the first k with u_k = -M.
inline std::int32_t antipodal_argmax(const float* u, Index m) {
  float top = std::fabs(u[0]);
  Index k = 1;
#ifdef ATTNBENCH_LSH_AVX2
  if (m >= 8) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 mx = _mm256_and_ps(_mm256_loadu_ps(u), abs_mask);
    for (k = 8; k + 8 <= m; k += 8) {
      mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(u + k), abs_mask));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    top = _mm_cvtss_f32(h);
  }
#endif
  for (; k < m; ++k) top = std::max(top, std::fabs(u[k]));
  const Index pos = kernels::first_equal(u, m, top);
  if (pos < m) return static_cast<std::int32_t>(pos);
  const Index neg = kernels::first_equal(u, m, -top);
  return static_cast<std::int32_t>(neg < m ? m + neg : 0);  // 0 for NaN input
}

inline void buckets_of_row(const float* u, const Config& cfg, Index cols, std::int32_t* out) {
  for (Index r = 0; r < cfg.n_hashes; ++r) {
    const float* ur = u + r * cols;
    std::int32_t bucket = 0, radix = 1;
    Index offset = 0;
    for (Index f : cfg.buckets.factors) {
      bucket += radix * antipodal_argmax(ur + offset, f / 2);
      radix *= static_cast<std::int32_t>(f);
      offset += f / 2;
    }
    out[r] = bucket;
  }
}

// Rotation padded to a multiple of 16 columns for the GEMM kernel (extra columns are zero and
// never read by the argmax).
RowMatrix padded_rotation(const RowMatrix& r) {
  RowMatrix out = RowMatrix::Zero(r.rows(), round_up(std::max<Index>(1, r.cols()), kNr));
  out.leftCols(r.cols()) = r;
  return out;
}

// Rows [row0, row0 + rows) of x (stride ldx) through the padded rotation rp (d, w_pad).
void hash_tile(const float* x, Index ldx, const RowMatrix& rp, const Config& cfg, Index row0,
               Index rows, float* scratch, std::int32_t* buckets) {
  const Index w_pad = rp.cols(), cols = cfg.buckets.rotation_cols();
  kernels::gemm(rows, w_pad, cfg.d, x + row0 * ldx, ldx, false, rp.data(), w_pad, scratch, w_pad);
  for (Index i = 0; i < rows; ++i) {
    buckets_of_row(scratch + i * w_pad, cfg, cols, buckets + i * cfg.n_hashes);
  }
}

}  // namespace

std::vector<std::int32_t> hash_all(ConstMatRef x, const RowMatrix& rotations, const Config& cfg) {
  const RowMatrix rp = padded_rotation(rotations);
  const RowMatrix xc = x;
  std::vector<std::int32_t> buckets(x.rows() * cfg.n_hashes);
  std::vector<float> scratch(kHashTile * rp.cols());
  for (Index i0 = 0; i0 < x.rows(); i0 += kHashTile) {
    hash_tile(xc.data(), xc.cols(), rp, cfg, i0, std::min(kHashTile, x.rows() - i0), scratch.data(),
              buckets.data() + i0 * cfg.n_hashes);
  }
  return buckets;
}

void sort_round(const std::int32_t* buckets, Index stride, Index n, Index n_buckets, Index n_pad,
                std::int32_t* counts, std::int32_t* perm, std::int32_t* slot) {
  std::fill(counts, counts + n_buckets, 0);
  for (Index i = 0; i < n; ++i) ++counts[buckets[i * stride]];
  std::int32_t start = 0;
  for (Index b = 0; b < n_buckets; ++b) {
    const std::int32_t c = counts[b];
    counts[b] = start;
    start += c;
  }
  // Increasing positions within a bucket: the sort key is (bucket, position).
  for (Index i = 0; i < n; ++i) {
    const std::int32_t p = counts[buckets[i * stride]]++;
    perm[p] = static_cast<std::int32_t>(i);
    slot[i] = p;
  }
  // Padding dummies form an extra last bucket.
  for (Index i = n; i < n_pad; ++i) perm[i] = static_cast<std::int32_t>(i);
}

namespace {

// The visible (round, chunk) pairs of query chunk t of round r, as 2 ints each into out (room
// for 2 visible_chunk_count()); returns how many. Allocation-free: called once per chunk task.
Index fill_visible(const Config& cfg, Index r, Index t, std::int32_t* out) {
  const Index nch = cfg.n_chunks(), wrap = cfg.wrap();
  const Index base = cfg.global_lookback ? r * nch + t : t;
  Index count = 0;
  auto add = [&](Index g) {
    out[2 * count] = static_cast<std::int32_t>(cfg.global_lookback ? g / nch : r);
    out[2 * count + 1] = static_cast<std::int32_t>(cfg.global_lookback ? g % nch : g);
    ++count;
  };
  if (cfg.chunks_before + cfg.chunks_after + 1 >= wrap) {
    for (Index g = 0; g < wrap; ++g) add(g);  // every chunk once: no key is seen twice
  } else {
    for (Index o = -cfg.chunks_before; o <= cfg.chunks_after; ++o) {
      add(((base + o) % wrap + wrap) % wrap);
    }
  }
  return count;
}

}  // namespace

std::vector<std::pair<Index, Index>> visible_chunks(const Config& cfg, Index r, Index t) {
  std::vector<std::int32_t> buf(2 * cfg.visible_chunk_count());
  const Index count = fill_visible(cfg, r, t, buf.data());
  std::vector<std::pair<Index, Index>> out;
  for (Index i = 0; i < count; ++i) out.emplace_back(buf[2 * i], buf[2 * i + 1]);
  return out;
}

bool counted(const Config& cfg, Index query_chunk, Index key_chunk) {
  const Index wrap = cfg.wrap();
  if (cfg.chunks_before + cfg.chunks_after + 1 >= wrap) return true;
  Index dl = key_chunk - query_chunk;
  if (dl < 0) dl += wrap;
  return dl <= cfg.chunks_after || dl >= wrap - cfg.chunks_before;
}

Layout make_layout(ConstMatRef q, ConstMatRef k, const Config& cfg, Index head) {
  Layout lay;
  lay.cfg = cfg;
  lay.rotations = draw_rotations(cfg, head);
  lay.q_buckets = hash_all(q, lay.rotations, cfg);
  lay.k_buckets = cfg.shared_qk ? lay.q_buckets : hash_all(k, lay.rotations, cfg);
  const Index n = cfg.n, np = cfg.n_pad(), nb = cfg.buckets.n_buckets;
  std::vector<std::int32_t> counts(nb);
  for (Index r = 0; r < cfg.n_hashes; ++r) {
    for (int which = 0; which < 2; ++which) {
      const auto& b = which == 0 ? lay.q_buckets : lay.k_buckets;
      std::vector<std::int32_t> perm(np), slot(n);
      sort_round(b.data() + r, cfg.n_hashes, n, nb, np, counts.data(), perm.data(), slot.data());
      (which == 0 ? lay.q_perm : lay.k_perm).push_back(std::move(perm));
      (which == 0 ? lay.q_slot : lay.k_slot).push_back(std::move(slot));
    }
  }
  return lay;
}

std::vector<Index> Layout::visible_keys(Index r, Index i) const {
  std::vector<Index> keys;
  const Index t = q_slot[r][i] / cfg.chunk;
  for (const auto& [r2, t2] : visible_chunks(cfg, r, t)) {
    for (Index p = t2 * cfg.chunk; p < (t2 + 1) * cfg.chunk; ++p) {
      const Index j = k_perm[r2][p];
      if (j < cfg.n) keys.push_back(j);
    }
  }
  return keys;
}

Index Layout::pair_count(Index i, Index j) const {
  Index count = 0;
  for (Index r = 0; r < cfg.n_hashes; ++r) {
    count += counted(cfg, q_slot[r][i] / cfg.chunk, k_slot[r][j] / cfg.chunk);
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// The attention

namespace {

constexpr Index kMaxGroupKeys = 512;  // keys per score tile (visible chunks are tiled by this)
constexpr Index kTokenBlock = 512;    // tokens or slots per task in the per-token passes
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

inline void prefetch_row(const float* p, Index len) {
  for (Index i = 0; i < len; i += 16) __builtin_prefetch(p + i);
}

// Geometry of the workspaces, shared by the constructor and the cost model.
struct Sizes {
  Index n = 0, n_pad = 0, chunk = 0, c_pad = 0, d = 0, d_v = 0, dv_pad = 0, hashes = 0;
  Index rot_pad = 0, n_buckets = 0;
  Index vis_chunks = 0;    // distinct visible chunks per query chunk
  Index group_chunks = 0;  // visible chunks per score tile
  Index group_keys = 0;    // keys per score tile
  bool counts = false;     // the duplicate count varies between pairs and must be computed
  bool shared = true;
  Index heads_in_flight = 1;

  Sizes(const Problem& p, const Config& cfg, int threads) {
    n = cfg.n;
    n_pad = cfg.n_pad();
    chunk = cfg.chunk;
    c_pad = round_up(chunk, kNr);
    d = p.d;
    d_v = p.d_v;
    dv_pad = round_up(d_v, kNr);
    hashes = cfg.n_hashes;
    rot_pad = round_up(std::max<Index>(1, hashes * cfg.buckets.rotation_cols()), kNr);
    n_buckets = cfg.buckets.n_buckets;
    vis_chunks = cfg.visible_chunk_count();
    group_chunks = std::clamp<Index>(kMaxGroupKeys / chunk, 1, vis_chunks);
    group_keys = group_chunks * chunk;
    // A constant count (one round, or every chunk visible) shifts all of a round's logits
    // equally and cancels in the round combination.
    counts = cfg.dup_correction && hashes > 1 && vis_chunks < cfg.wrap();
    shared = cfg.shared_qk;
    heads_in_flight = std::clamp<Index>(threads, 1, p.batch * p.heads);
  }

  // Per head in flight (HeadWorkspace).
  double head_bytes() const {
    const double sides = shared ? 1.0 : 2.0, nh = double(n) * hashes;
    double ints = sides * (2.0 * nh + double(n_pad) * hashes) + double(n_pad);  // + kpos
    if (counts) ints += sides * (nh + double(n_pad) * hashes);
    double floats = 2.0 * double(n) + sides * double(n_pad) * d + double(n_pad) * dv_pad;
    if (shared) floats += double(n) + double(n_pad);  // inverse norms, sorted
    return 4.0 * (ints + floats);
  }
  // Per thread (ThreadWorkspace).
  double thread_bytes() const {
    const double floats = double(d) * c_pad + double(group_keys) * (d + dv_pad + c_pad + 1) +
                          double(c_pad) * dv_pad + 3.0 * c_pad + double(kHashTile) * rot_pad +
                          (counts ? double(c_pad) : 0.0);
    const double ints = double(group_keys) +
                        (counts ? double(hashes) * (c_pad + group_keys) : 0.0) + double(n_buckets) +
                        2.0 * double(vis_chunks);
    return 4.0 * (floats + ints) + 48.0 * double(group_chunks);
  }
  double setup_bytes(Index heads) const { return 4.0 * double(heads) * double(d) * rot_pad; }
};

struct HeadWorkspace {
  // Hashing and sorting. Token-major (n, H) or round-major (H, n_pad / n).
  std::vector<std::int32_t> q_buckets, k_buckets;  // (n, H)
  std::vector<std::int32_t> q_perm, k_perm;        // (H, n_pad): sorted slot -> token
  std::vector<std::int32_t> q_slot, k_slot;        // (H, n): token -> sorted slot
  std::vector<std::int32_t> q_cid, k_cid;          // (n, H): chunk of a token in every round
  std::vector<float> inv_norm;                     // (n): 1 / |x_j| (shared QK)
  // The current round's inputs in sorted order (one streaming gather per round).
  std::vector<float> xs;                       // (n_pad, d): queries; shared QK: also keys
  std::vector<float> ks;                       // (n_pad, d): keys (separate QK)
  std::vector<float> vs;                       // (n_pad, dv_pad)
  std::vector<std::int32_t> kpos;              // (n_pad): key token, -1 if excluded
  std::vector<float> kscale;                   // (n_pad): key scale (shared QK: 1 / |x|)
  std::vector<std::int32_t> q_cid_s, k_cid_s;  // (n_pad, H): chunk ids in sorted order
  // Running softmax state of every row across tiles and rounds.
  std::vector<float> run_m, run_l;  // (n)
};

// Where one visible chunk's keys are: rows of the sorted buffers (its own round) or gathered
// into the thread workspace (a chunk of another round under global look-back).
struct ChunkKeys {
  const float* k;
  const float* v;
  const std::int32_t* pos;
  const float* scale;  // null: 1
  const std::int32_t* cid;
};

struct ThreadWorkspace {
  std::vector<float> qt;              // (d, c_pad): scaled queries of the chunk, transposed
  std::vector<float> st;              // (group_keys, c_pad): scores, key-major
  std::vector<float> acc;             // (c_pad, dv_pad)
  std::vector<float> m, l, ref;       // c_pad
  std::vector<float> mult;            // c_pad (counts only)
  std::vector<std::int32_t> qpos;     // c_pad: query token or -1
  std::vector<std::int32_t> q_cid_t;  // (H, c_pad) (counts only)
  // Keys of chunks of other rounds (global look-back only).
  std::vector<float> kb, vb, kscale;      // (group_keys, d), (group_keys, dv_pad), group_keys
  std::vector<std::int32_t> kpos, kcid;   // group_keys, (group_keys, H)
  std::vector<ChunkKeys> src;             // group_chunks
  std::vector<float> hash;                // (kHashTile, rot_pad)
  std::vector<std::int32_t> sort_counts;  // n_buckets
  std::vector<std::int32_t> vis;          // 2 vis_chunks: (round, chunk) pairs
};

class LshAttention final : public Attention {
 public:
  LshAttention(const Problem& p, const ParamSet& params, bool shared_qk)
      : Attention(shared_qk ? "reformer" : "reformer_qk", p, params),
        cfg_(checked_config(p, shared_qk)),
        sizes_(p, cfg_, tbb::this_task_arena::max_concurrency()),
        threads_([this] { return make_thread_workspace(); }) {
    params_.set("chunk", cfg_.chunk);
    params_.set("n_buckets", cfg_.buckets.n_buckets);
    for (Index h = 0; h < p.heads; ++h) {
      rotations_.push_back(padded_rotation(draw_rotations(cfg_, h)));
    }
    heads_.resize(sizes_.heads_in_flight);
    for (auto& hw : heads_) allocate(hw);
    group_heads_.reserve(sizes_.heads_in_flight);
  }

  Json diagnostics() const override {
    return {{"n_pad", cfg_.n_pad()},
            {"n_chunks", cfg_.n_chunks()},
            {"buckets", cfg_.buckets.to_string()},
            {"rotation_columns_per_round", cfg_.buckets.rotation_cols()},
            {"visible_chunks", sizes_.vis_chunks},
            {"duplicate_counts_computed", sizes_.counts},
            {"heads_in_flight", sizes_.heads_in_flight}};
  }

 protected:
  void compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
               const KeyMask& mask) override {
    const Problem& p = problem();
    const Index total = p.batch * p.heads;
    for (Index bh0 = 0; bh0 < total; bh0 += sizes_.heads_in_flight) {
      const Index group = std::min(sizes_.heads_in_flight, total - bh0);
      run_group(q, k, v, out, mask, bh0, group);
    }
  }

 private:
  // The configuration, after checking the parameters against the problem (before anything is
  // allocated).
  Config checked_config(const Problem& p, bool shared_qk) const {
    const Config cfg = make_config(p, params(), shared_qk);
    if (p.n_q != p.n_k) {
      throw std::invalid_argument(
          name() + ": needs n_q = n_k (" +
          (shared_qk ? "shared-QK self-attention" : "query and key chunks are aligned") +
          "), got " + p.to_string());
    }
    const ParamSet& s = params();
    if (!s.is_auto("chunk") && s.get_int("chunk") > p.n_k) {
      reject("chunk", s.get_int("chunk"),
             "a chunk length <= n = " + std::to_string(p.n_k) +
                 " (one chunk already covers the whole sequence)");
    }
    if (!s.is_auto("n_buckets") && s.get_int("n_buckets") % 2 != 0) {
      reject("n_buckets", s.get_int("n_buckets"),
             "an even number (the hash is an argmax over [xR; -xR]: buckets come in antipodal "
             "pairs)");
    }
    if (shared_qk && !s.get_bool("shared_qk")) {
      reject("shared_qk", false,
             "true; separate Q and K hashed with the same rotations is the variant "
             "'reformer_qk' (its error is measured against plain softmax, not shared-QK "
             "softmax)");
    }
    if (double(cfg.n_pad()) * double(cfg.n_hashes) >= 2147483647.0) {
      reject("n_hashes", cfg.n_hashes, "n_pad * n_hashes < 2^31 (32-bit sorted indices)");
    }
    return cfg;
  }

  void allocate(HeadWorkspace& hw) const {
    const Sizes& z = sizes_;
    const Index n = z.n, np = z.n_pad, H = z.hashes;
    const bool two = !z.shared;
    hw.q_buckets.assign(n * H, 0);
    hw.q_perm.assign(np * H, 0);
    hw.q_slot.assign(n * H, 0);
    hw.xs.assign(np * z.d, 0.0f);
    hw.vs.assign(np * z.dv_pad, 0.0f);
    hw.kpos.assign(np, -1);
    if (z.counts) {
      hw.q_cid.assign(n * H, 0);
      hw.q_cid_s.assign(np * H, 0);
    }
    if (two) {
      hw.k_buckets.assign(n * H, 0);
      hw.k_perm.assign(np * H, 0);
      hw.k_slot.assign(n * H, 0);
      hw.ks.assign(np * z.d, 0.0f);
      if (z.counts) {
        hw.k_cid.assign(n * H, 0);
        hw.k_cid_s.assign(np * H, 0);
      }
    } else {
      hw.inv_norm.assign(n, 0.0f);
      hw.kscale.assign(np, 0.0f);
    }
    hw.run_m.assign(n, 0.0f);
    hw.run_l.assign(n, 0.0f);
  }

  ThreadWorkspace make_thread_workspace() const {
    const Sizes& z = sizes_;
    ThreadWorkspace w;
    w.qt.assign(z.d * z.c_pad, 0.0f);
    w.st.assign(z.group_keys * z.c_pad, 0.0f);
    w.acc.assign(z.c_pad * z.dv_pad, 0.0f);
    w.m.assign(z.c_pad, 0.0f);
    w.l.assign(z.c_pad, 0.0f);
    w.ref.assign(z.c_pad, 0.0f);
    w.qpos.assign(z.c_pad, -1);
    if (z.counts) {
      w.mult.assign(z.c_pad, 0.0f);
      w.q_cid_t.assign(z.hashes * z.c_pad, 0);
    }
    if (cfg_.global_lookback) {
      w.kb.assign(z.group_keys * z.d, 0.0f);
      w.vb.assign(z.group_keys * z.dv_pad, 0.0f);
      w.kscale.assign(z.group_keys, 0.0f);
      w.kpos.assign(z.group_keys, -1);
      if (z.counts) w.kcid.assign(z.group_keys * z.hashes, 0);
    }
    w.src.assign(z.group_chunks, ChunkKeys{});
    w.hash.assign(kHashTile * z.rot_pad, 0.0f);
    w.sort_counts.assign(z.n_buckets, 0);
    w.vis.assign(2 * z.vis_chunks, 0);
    return w;
  }

  struct Head {
    const float* q;
    const float* k;
    const float* v;
    std::span<const std::uint8_t> valid;
    float* out;
    const RowMatrix* rot;
    HeadWorkspace* ws;
    bool key_ok(std::int32_t tok) const { return valid.empty() || valid[tok]; }
  };

  template <typename F>
  static void parallel_tasks(Index count, F&& body) {
    attnbench::parallel_for(tbb::blocked_range<Index>(0, count, 1), [&](const auto& rg) {
      for (Index task = rg.begin(); task < rg.end(); ++task) body(task);
    });
  }

  void run_group(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
                 const KeyMask& mask, Index bh0, Index group) {
    const Problem& p = problem();
    const Index n = cfg_.n, np = cfg_.n_pad(), H = cfg_.n_hashes, sides = cfg_.shared_qk ? 1 : 2;
    std::vector<Head>& hs = group_heads_;
    hs.clear();
    for (Index g = 0; g < group; ++g) {
      const Index b = (bh0 + g) / p.heads, h = (bh0 + g) % p.heads;
      hs.push_back({q.head_data(b, h), k.head_data(b, h), v.head_data(b, h), mask.row(b),
                    out.head_data(b, h), &rotations_[h], &heads_[g]});
    }

    // 1. Hash every token in every round; inverse key norms for shared QK.
    const Index tiles = (n + kHashTile - 1) / kHashTile;
    parallel_tasks(group * sides * tiles, [&](Index task) {
      ThreadWorkspace& w = threads_.local();
      const Head& hd = hs[task / (sides * tiles)];
      const bool keys = (task / tiles) % sides == 1;
      const Index i0 = (task % tiles) * kHashTile, rows = std::min(kHashTile, n - i0);
      const float* x = keys ? hd.k : hd.q;
      std::int32_t* out_b = (keys ? hd.ws->k_buckets : hd.ws->q_buckets).data() + i0 * H;
      hash_tile(x, cfg_.d, *hd.rot, cfg_, i0, rows, w.hash.data(), out_b);
      if (cfg_.shared_qk) {
        for (Index i = i0; i < i0 + rows; ++i) {
          const float* xi = x + i * cfg_.d;
          float ss = 0.0f;
          for (Index c = 0; c < cfg_.d; ++c) ss += xi[c] * xi[c];
          // A zero query has no direction; its key stays zero (logit 0), as in the reference.
          hd.ws->inv_norm[i] = ss > 0.0f ? 1.0f / std::sqrt(ss) : 0.0f;
        }
      }
    });

    // 2. Sort every round (queries and, for separate QK, keys).
    parallel_tasks(group * sides * H, [&](Index task) {
      ThreadWorkspace& w = threads_.local();
      HeadWorkspace& hw = *hs[task / (sides * H)].ws;
      const bool keys = (task / H) % sides == 1;
      const Index r = task % H;
      sort_round((keys ? hw.k_buckets : hw.q_buckets).data() + r, H, n, cfg_.buckets.n_buckets, np,
                 w.sort_counts.data(), (keys ? hw.k_perm : hw.q_perm).data() + r * np,
                 (keys ? hw.k_slot : hw.q_slot).data() + r * n);
    });

    // 3. Per token: chunk ids of every round (for the count), the running state, zero output.
    const Index blocks = (n + kTokenBlock - 1) / kTokenBlock;
    parallel_tasks(group * blocks, [&](Index task) {
      const Head& hd = hs[task / blocks];
      HeadWorkspace& hw = *hd.ws;
      const Index i0 = (task % blocks) * kTokenBlock, i1 = std::min(n, i0 + kTokenBlock);
      if (sizes_.counts) {
        const auto c = static_cast<std::int32_t>(cfg_.chunk);
        for (Index i = i0; i < i1; ++i) {
          for (Index r = 0; r < H; ++r) {
            hw.q_cid[i * H + r] = hw.q_slot[r * n + i] / c;
            if (sides == 2) hw.k_cid[i * H + r] = hw.k_slot[r * n + i] / c;
          }
        }
      }
      std::fill(hw.run_m.begin() + i0, hw.run_m.begin() + i1, kNegInf);
      std::fill(hw.run_l.begin() + i0, hw.run_l.begin() + i1, 0.0f);
      std::fill(hd.out + i0 * p.d_v, hd.out + i1 * p.d_v, 0.0f);
    });

    // 4. Rounds one after another, so each row's running state is updated by one task at a
    // time and in round order (deterministic for any thread count): gather the round's inputs
    // in sorted order, then attend chunk by chunk.
    const Index nch = cfg_.n_chunks(), slot_blocks = (np + kTokenBlock - 1) / kTokenBlock;
    for (Index r = 0; r < H; ++r) {
      parallel_tasks(group * slot_blocks, [&](Index task) {
        const Index p0 = (task % slot_blocks) * kTokenBlock;
        gather_round(hs[task / slot_blocks], r, p0, std::min(np, p0 + kTokenBlock));
      });
      parallel_tasks(group * nch, [&](Index task) {
        attend_chunk(hs[task / nch], threads_.local(), r, task % nch);
      });
    }

    // 5. Normalise; a row that saw no other key attends to itself when it may (shared QK).
    parallel_tasks(group * blocks, [&](Index task) {
      const Index dv = p.d_v;
      const Head& hd = hs[task / blocks];
      const Index i0 = (task % blocks) * kTokenBlock, i1 = std::min(n, i0 + kTokenBlock);
      for (Index i = i0; i < i1; ++i) {
        float* o = hd.out + i * dv;
        const float l = hd.ws->run_l[i];
        if (l > 0.0f) {
          const float inv = 1.0f / l;
          for (Index c = 0; c < dv; ++c) o[c] *= inv;
        } else if (cfg_.shared_qk && hd.key_ok(static_cast<std::int32_t>(i))) {
          std::copy(hd.v + i * dv, hd.v + (i + 1) * dv, o);
        }
      }
    });
  }

  // Sorted slots [p0, p1) of round r: queries (and keys), values, key positions and scales,
  // chunk ids. Padding dummies get zero rows and position -1.
  void gather_round(const Head& hd, Index r, Index p0, Index p1) const {
    const Sizes& z = sizes_;
    const Index n = z.n, np = z.n_pad, d = z.d, dv = z.d_v, dvp = z.dv_pad, H = z.hashes;
    HeadWorkspace& hw = *hd.ws;
    const bool shared = z.shared;
    const std::int32_t* qperm = hw.q_perm.data() + r * np;
    const std::int32_t* kperm = shared ? qperm : hw.k_perm.data() + r * np;
    // The rows are scattered: prefetch a few slots ahead so the loads overlap.
    constexpr Index kAhead = 16;
    auto prefetch_rows = [&](Index s) {
      const std::int32_t tq = qperm[s], tk = kperm[s];
      if (tq < n) prefetch_row(hd.q + tq * d, d);
      if (tk < n) {
        prefetch_row(hd.v + tk * dv, dv);
        if (!shared) prefetch_row(hd.k + tk * d, d);
      }
    };
    for (Index s = p0; s < std::min(p1, p0 + kAhead); ++s) prefetch_rows(s);
    for (Index s = p0; s < p1; ++s) {
      if (s + kAhead < p1) prefetch_rows(s + kAhead);
      // Queries (shared QK: the same rows serve as keys).
      {
        const std::int32_t tok = qperm[s];
        float* xs = hw.xs.data() + s * d;
        const bool real = tok < n;
        const float* x = hd.q + (real ? tok : 0) * d;
        for (Index c = 0; c < d; ++c) xs[c] = real ? x[c] : 0.0f;
        if (z.counts) {
          for (Index r2 = 0; r2 < H; ++r2) {
            hw.q_cid_s[s * H + r2] = real ? hw.q_cid[tok * H + r2] : 0;
          }
        }
      }
      // Keys and values.
      const std::int32_t tok = kperm[s];
      const bool ok = tok < n && hd.key_ok(tok);
      hw.kpos[s] = ok ? tok : -1;
      const float* v = hd.v + (ok ? tok : 0) * dv;
      float* vs = hw.vs.data() + s * dvp;
      for (Index c = 0; c < dv; ++c) vs[c] = ok ? v[c] : 0.0f;
      if (shared) {
        hw.kscale[s] = ok ? hw.inv_norm[tok] : 0.0f;
      } else {
        const float* k = hd.k + (ok ? tok : 0) * d;
        float* ks = hw.ks.data() + s * d;
        for (Index c = 0; c < d; ++c) ks[c] = ok ? k[c] : 0.0f;
        if (z.counts) {
          for (Index r2 = 0; r2 < H; ++r2) {
            hw.k_cid_s[s * H + r2] = ok ? hw.k_cid[tok * H + r2] : 0;
          }
        }
      }
    }
  }

  // Keys of chunk t2 of round r2 != r (global look-back), gathered from the token arrays into
  // the thread workspace at key offset off.
  ChunkKeys gather_other_round(const Head& hd, ThreadWorkspace& w, Index r2, Index t2,
                               Index off) const {
    const Sizes& z = sizes_;
    const Index n = z.n, c = z.chunk, d = z.d, dv = z.d_v, dvp = z.dv_pad, H = z.hashes;
    const HeadWorkspace& hw = *hd.ws;
    const std::int32_t* perm = (z.shared ? hw.q_perm : hw.k_perm).data() + r2 * z.n_pad + t2 * c;
    const float* keys = z.shared ? hd.q : hd.k;
    const std::vector<std::int32_t>& cid = z.shared ? hw.q_cid : hw.k_cid;
    for (Index kk = 0; kk < c; ++kk) {
      const std::int32_t tok = perm[kk];
      const bool ok = tok < n && hd.key_ok(tok);
      const Index col = off + kk;
      w.kpos[col] = ok ? tok : -1;
      w.kscale[col] = ok ? (z.shared ? hw.inv_norm[tok] : 1.0f) : 0.0f;
      const float* x = keys + (ok ? tok : 0) * d;
      const float* v = hd.v + (ok ? tok : 0) * dv;
      for (Index p = 0; p < d; ++p) w.kb[col * d + p] = ok ? x[p] : 0.0f;
      for (Index p = 0; p < dv; ++p) w.vb[col * dvp + p] = ok ? v[p] : 0.0f;
      if (z.counts) {
        for (Index r3 = 0; r3 < H; ++r3) w.kcid[col * H + r3] = ok ? cid[tok * H + r3] : 0;
      }
    }
    return {w.kb.data() + off * d, w.vb.data() + off * dvp, w.kpos.data() + off,
            w.kscale.data() + off, z.counts ? w.kcid.data() + off * H : nullptr};
  }

  // Query chunk t of round r against its visible key chunks.
  void attend_chunk(const Head& hd, ThreadWorkspace& w, Index r, Index t) const {
    const Sizes& z = sizes_;
    const Index n = z.n, np = z.n_pad, c = z.chunk, cp = z.c_pad, d = z.d;
    const Index dv = z.d_v, dvp = z.dv_pad, H = z.hashes;
    const HeadWorkspace& hw = *hd.ws;
    const float scale = static_cast<float>(problem().effective_scale());

    const auto wrap = static_cast<std::int32_t>(cfg_.wrap());
    const auto before = static_cast<std::int32_t>(cfg_.chunks_before % cfg_.wrap());
    // Queries of the chunk, scaled and transposed to (d, c_pad), 8 at a time so the strided
    // writes of the transpose come in runs of 8. Padding columns (qq >= c) are zero.
    const std::int32_t* qperm = hw.q_perm.data() + r * np + t * c;
    const float* qrows = hw.xs.data() + t * c * d;
    for (Index q0 = 0; q0 < cp; q0 += 8) {
      const float* rows[8];
      for (Index u = 0; u < 8; ++u) {
        const Index qq = q0 + u;
        const std::int32_t tok = qq < c ? qperm[qq] : -1;
        w.qpos[qq] = tok >= 0 && tok < n ? tok : -1;
        rows[u] = qq < c ? qrows + qq * d : zeros_.data();
      }
      kernels::transpose8_scaled(rows, d, scale, w.qt.data() + q0, cp);
      if (z.counts) {
        for (Index u = 0; u < 8; ++u) {
          const Index qq = q0 + u;
          // Stored as the first visible key chunk, (chunk - before) mod wrap.
          for (Index r2 = 0; r2 < H; ++r2) {
            const std::int32_t cid = qq < c ? hw.q_cid_s[(t * c + qq) * H + r2] : 0;
            w.q_cid_t[r2 * cp + qq] = (cid + wrap - before) % wrap;
          }
        }
      }
    }

    // The chunk's output rows and running state are scattered over the head; fetch them while
    // the scores are computed.
    for (Index qq = 0; qq < c; ++qq) {
      const std::int32_t i = w.qpos[qq];
      if (i < 0) continue;
      prefetch_row(hd.out + i * dv, dv);
      __builtin_prefetch(hw.run_m.data() + i);
      __builtin_prefetch(hw.run_l.data() + i);
    }

    const Index n_vis = fill_visible(cfg_, r, t, w.vis.data());
    const bool shared = z.shared;
    const float* keys_sorted = shared ? hw.xs.data() : hw.ks.data();
    const std::int32_t* kcid_sorted = shared ? hw.q_cid_s.data() : hw.k_cid_s.data();
    for (Index g0 = 0; g0 < n_vis; g0 += z.group_chunks) {
      const Index gc = std::min(z.group_chunks, n_vis - g0), nk = gc * c;
      float* st = w.st.data();
      // Scores, key-major: st rows of chunk gi = K_gi (c, d) Q^T (d, c_pad).
      for (Index gi = 0; gi < gc; ++gi) {
        const Index r2 = w.vis[2 * (g0 + gi)], t2 = w.vis[2 * (g0 + gi) + 1];
        ChunkKeys& src = w.src[gi];
        if (r2 == r) {
          const Index s0 = t2 * c;
          src = {keys_sorted + s0 * d, hw.vs.data() + s0 * dvp, hw.kpos.data() + s0,
                 shared ? hw.kscale.data() + s0 : nullptr,
                 z.counts ? kcid_sorted + s0 * H : nullptr};
        } else {
          src = gather_other_round(hd, w, r2, t2, gi * c);
        }
        kernels::gemm(c, cp, d, src.k, d, false, w.qt.data(), cp, st + gi * c * cp, cp);
      }

      // Key scale (1 / |k| for shared QK), masks, and the per-query maximum. Excluded keys are
      // -inf, never a finite penalty: a row with nothing allowed must contribute nothing.
      std::fill(w.m.begin(), w.m.end(), kNegInf);
      for (Index gi = 0; gi < gc; ++gi) {
        const ChunkKeys& src = w.src[gi];
        for (Index kk = 0; kk < c; ++kk) {
          float* row = st + (gi * c + kk) * cp;
          mask_row(row, src.pos[kk], src.scale ? src.scale[kk] : 1.0f, w.qpos.data(), w.m.data(),
                   cp);
        }
      }
      for (Index i = 0; i < cp; ++i) w.ref[i] = w.m[i] == kNegInf ? 0.0f : w.m[i];

      // Probabilities, with the duplicate-count correction exp(s - log cnt) = exp(s) / cnt.
      std::fill(w.l.begin(), w.l.end(), 0.0f);
      for (Index gi = 0; gi < gc; ++gi) {
        const ChunkKeys& src = w.src[gi];
        for (Index kk = 0; kk < c; ++kk) {
          const float* mult = nullptr;
          if (z.counts) {
            count_row(w, src.cid + kk * H, r);
            mult = w.mult.data();
          }
          kernels::exp_accumulate(st + (gi * c + kk) * cp, w.ref.data(), mult, w.l.data(), cp);
        }
      }

      // acc (c_pad, dv_pad) = P (c_pad, nk) V (nk, dv_pad), P stored transposed in st.
      for (Index gi = 0; gi < gc; ++gi) {
        kernels::gemm(cp, dvp, c, st + gi * c * cp, cp, true, w.src[gi].v, dvp, w.acc.data(), dvp,
                      /*accumulate=*/gi > 0);
      }
      (void)nk;

      // Fold into each row's running state (online softmax across tiles and rounds).
      for (Index qq = 0; qq < c; ++qq) {
        const std::int32_t i = w.qpos[qq];
        const float l = w.l[qq];
        if (i < 0 || !(l > 0.0f)) continue;
        float* o = hd.out + i * dv;
        const float* a = w.acc.data() + qq * dvp;
        float& run_m = hd.ws->run_m[i];
        float& run_l = hd.ws->run_l[i];
        const float m = w.m[qq];
        if (m > run_m) {
          const float alpha = std::exp(run_m - m);  // 0 on the first contribution
          for (Index x = 0; x < dv; ++x) o[x] = alpha * o[x] + a[x];
          run_l = alpha * run_l + l;
          run_m = m;
        } else {
          const float beta = std::exp(m - run_m);
          for (Index x = 0; x < dv; ++x) o[x] += beta * a[x];
          run_l += beta * l;
        }
      }
    }
  }

  // Scores of one key (token kp, -1 if excluded) against the chunk's queries: scaled by the
  // key's scale, -inf where excluded (padding or dummy key, causal: key after query, shared QK:
  // the query itself); updates the per-query maximum m.
  void mask_row(float* row, std::int32_t kp, float kscale, const std::int32_t* qpos, float* m,
                Index cp) const {
    if (kp < 0) {
      std::fill(row, row + cp, kNegInf);
      return;
    }
    const bool causal = cfg_.causal, shared = cfg_.shared_qk;
    if (causal && shared) {
      kernels::mask_scale_max<true, true>(row, kp, kscale, qpos, m, cp);
    } else if (causal) {
      kernels::mask_scale_max<true, false>(row, kp, kscale, qpos, m, cp);
    } else if (shared) {
      kernels::mask_scale_max<false, true>(row, kp, kscale, qpos, m, cp);
    } else {
      kernels::mask_scale_max<false, false>(row, kp, kscale, qpos, m, cp);
    }
  }

  // mult[i] = 1 / cnt(query i, key) for one key with chunk ids kcid (one per round): the count
  // rule over all rounds (the current round always counts in per-round mode). With global
  // look-back the count can be 0: like the reference codes (log(cnt + 1e-9)) the count starts
  // at 1e-9, which vanishes in float next to any count >= 1 and gives the factor 1e9 for 0.
  void count_row(ThreadWorkspace& w, const std::int32_t* kcid, Index r) const {
    const bool per_round = !cfg_.global_lookback;
    kernels::count_multipliers(
        kcid, w.q_cid_t.data(), sizes_.c_pad, cfg_.n_hashes, per_round ? r : -1,
        static_cast<std::int32_t>(cfg_.wrap()),
        static_cast<std::int32_t>(cfg_.chunks_before + cfg_.chunks_after + 1),
        per_round ? 1.0f : 1.0e-9f, w.mult.data(), sizes_.c_pad);
  }

  Config cfg_;
  Sizes sizes_;
  WorkspacePool<ThreadWorkspace> threads_;
  std::vector<RowMatrix> rotations_;  // per head, padded to a multiple of 16 columns
  std::vector<HeadWorkspace> heads_;
  std::vector<Head> group_heads_;
  std::vector<float> zeros_ = std::vector<float>(std::max<Index>(1, problem().d), 0.0f);
};

}  // namespace

Cost cost(const Problem& p, const ParamSet& params, int threads, bool shared_qk) {
  const Config cfg = make_config(p, params, shared_qk);
  const Sizes z(p, cfg, threads);
  const double bh = double(p.batch * p.heads), H = double(cfg.n_hashes);
  const double sides = shared_qk ? 1.0 : 2.0;
  // Hashing GEMM over padded rotation columns, per token and side.
  const double hash = sides * double(cfg.n) * 2.0 * double(p.d) * double(z.rot_pad);
  // Per round and query chunk: scores and P V over every visible key (padded query columns
  // included, as computed), plus exp/masks (~4 per score).
  const double pairs = double(cfg.n_chunks()) * double(z.c_pad) * double(z.vis_chunks * cfg.chunk);
  const double attend = H * pairs * (2.0 * p.d + 2.0 * z.dv_pad + 4.0);
  const double memory = z.setup_bytes(p.heads) + double(z.heads_in_flight) * z.head_bytes() +
                        double(std::max(1, threads)) * z.thread_bytes();
  return Cost{bh * (hash + attend), memory};
}

std::unique_ptr<Attention> make_attention(const Problem& p, const ParamSet& params,
                                          bool shared_qk) {
  return std::make_unique<LshAttention>(p, params, shared_qk);
}

}  // namespace attnbench::lsh
