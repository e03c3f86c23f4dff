// The fused FlashAttention tile kernel (FlashTile, declared in attention/online_softmax.h).
// Time O(br bc (d + d_v)) per key tile; memory O(br (d + bc + d_v) + bc d_v) floats per thread.
// Dao, "FlashAttention-2", 2023 (loop order, delayed normalisation); GotoBLAS-style micro-kernels.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

#include "attention/kernels/simd.h"
#include "attention/online_softmax.h"

// GCC 12's avx512fintrin.h trips -Wmaybe-uninitialized on its own _mm512_undefined_ps() when
// inlined (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13 && defined(__AVX512F__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if defined(__GNUC__)
#define ATTNBENCH_INLINE inline __attribute__((always_inline))
// Complete unrolling before scalar replacement keeps the accumulator arrays in registers
// (without it GCC 12 spills every accumulator to the stack on every k step).
#define ATTNBENCH_UNROLL _Pragma("GCC unroll 16")
#else
#define ATTNBENCH_INLINE inline
#define ATTNBENCH_UNROLL
#endif

namespace attnbench {

const char* to_string(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kPortable:
      return simd::Scalar::kName;
    case KernelIsa::kAvx2:
      return "avx2";
    case KernelIsa::kAvx2Pair:
      return "avx2x2";
    case KernelIsa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

bool kernel_isa_available(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kPortable:
      return true;
    case KernelIsa::kAvx2:
    case KernelIsa::kAvx2Pair:
#ifdef ATTNBENCH_HAVE_AVX2
      return true;
#else
      return false;
#endif
    case KernelIsa::kAvx512:
#ifdef ATTNBENCH_HAVE_AVX512
      return true;
#else
      return false;
#endif
  }
  return false;
}

KernelIsa best_kernel_isa() {
  if (kernel_isa_available(KernelIsa::kAvx512)) return KernelIsa::kAvx512;
  if (kernel_isa_available(KernelIsa::kAvx2)) return KernelIsa::kAvx2;
  return KernelIsa::kPortable;
}

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Index round_up(Index x, Index m) { return (x + m - 1) / m * m; }

// 64-byte aligned, zero-filled float buffer (zero-filling touches every page in setup).
struct FloatBuffer {
  float* data = nullptr;
  Index size = 0;

  FloatBuffer() = default;
  explicit FloatBuffer(Index n) : size(n) {
    if (n == 0) return;
    const std::size_t bytes = std::size_t(round_up(n * Index(sizeof(float)), 64));
    data = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!data) throw std::bad_alloc();
    std::fill(data, data + n, 0.0f);
  }
  ~FloatBuffer() { std::free(data); }
  FloatBuffer(FloatBuffer&& o) noexcept : data(o.data), size(o.size) {
    o.data = nullptr;
    o.size = 0;
  }
  FloatBuffer& operator=(FloatBuffer&& o) noexcept {
    std::swap(data, o.data);
    std::swap(size, o.size);
    return *this;
  }
};

// Sizes of the workspace arrays for backend V.
struct Layout {
  Index ldqt;    // row stride of Q^T and S^T: max_br rounded up to the score panel width, plus
                 // one cache line if that is an even number of lines (see below)
  Index ld_acc;  // d_v rounded up to the vector width
  Index qt, st, acc, vp, state;  // element counts; 4 state arrays (m, l, alpha, column max)

  template <class V>
  static Layout make(Index max_br, Index max_bc, Index d, Index d_v) {
    Layout l;
    l.ldqt = round_up(max_br, Index(V::kScoreNv * V::kWidth));
    // A column block of S^T (one P broadcast stream of the P V kernel) touches one line per key.
    // With a power-of-two stride those lines share a quarter of the L1 sets and evict each
    // other; an odd number of 64-byte lines per row spreads them over all sets.
    if (l.ldqt % 16 == 0 && (l.ldqt / 16) % 2 == 0) l.ldqt += 16;
    l.ld_acc = round_up(d_v, Index(V::kWidth));
    l.qt = d * l.ldqt;
    l.st = max_bc * l.ldqt;
    l.acc = max_br * l.ld_acc;
    l.vp = max_bc * l.ld_acc;
    l.state = l.ldqt;
    return l;
  }
  // Floats allocated: every array rounded up to 16 floats so each starts 64-byte aligned.
  Index floats() const {
    auto r = [](Index n) { return round_up(n, 16); };
    return r(qt) + r(st) + r(acc) + r(vp) + 4 * r(state);
  }
};

Layout layout_for(KernelIsa isa, Index max_br, Index max_bc, Index d, Index d_v) {
  switch (isa) {
#ifdef ATTNBENCH_HAVE_AVX512
    case KernelIsa::kAvx512:
      return Layout::make<simd::Avx512>(max_br, max_bc, d, d_v);
#endif
#ifdef ATTNBENCH_HAVE_AVX2
    case KernelIsa::kAvx2:
      return Layout::make<simd::Avx2>(max_br, max_bc, d, d_v);
    case KernelIsa::kAvx2Pair:
      return Layout::make<simd::Avx2Pair>(max_br, max_bc, d, d_v);
#endif
    default:
      return Layout::make<simd::Scalar>(max_br, max_bc, d, d_v);
  }
}

// ---- micro-kernels ---------------------------------------------------------------------------

// S^T block (MR keys x NV vectors of queries) = K rows [MR, d] . Q^T [d, NV*W], and
// colmax[0, NV*W) = max(colmax, max over the block's keys).
// k: first key row, stride ldk. qt: Q^T at the block's first query, stride ldqt.
template <class V, int MR, int NV>
ATTNBENCH_INLINE void score_block(Index d, const float* k, Index ldk, const float* qt, Index ldqt,
                                  float* st, Index ldst, float* colmax) {
  using Reg = typename V::Reg;
  constexpr int W = V::kWidth;
  Reg acc[MR][NV];
  const float* kr[MR];
  ATTNBENCH_UNROLL
  for (int i = 0; i < MR; ++i) {
    kr[i] = k + i * ldk;
    ATTNBENCH_UNROLL
    for (int j = 0; j < NV; ++j) {
      acc[i][j] = V::zero();
    }
  }
  for (Index kk = 0; kk < d; ++kk) {
    Reg b[NV];
    ATTNBENCH_UNROLL
    for (int j = 0; j < NV; ++j) {
      b[j] = V::load(qt + kk * ldqt + j * W);
    }
    ATTNBENCH_UNROLL
    for (int i = 0; i < MR; ++i) {
      const Reg a = V::broadcast(kr[i] + kk);
      ATTNBENCH_UNROLL
      for (int j = 0; j < NV; ++j) {
        acc[i][j] = V::fma(a, b[j], acc[i][j]);
      }
    }
  }
  ATTNBENCH_UNROLL
  for (int i = 0; i < MR; ++i) {
    ATTNBENCH_UNROLL
    for (int j = 0; j < NV; ++j) {
      V::store(st + i * ldst + j * W, acc[i][j]);
    }
  }
  // Fold the block into the running column (per query) max while it is still in registers,
  // which saves the softmax a pass over S^T.
  ATTNBENCH_UNROLL
  for (int j = 0; j < NV; ++j) {
    Reg mx = acc[0][j];
    ATTNBENCH_UNROLL
    for (int i = 1; i < MR; ++i) {
      mx = V::max(mx, acc[i][j]);
    }
    V::store(colmax + j * W, V::max(mx, V::load(colmax + j * W)));
  }
}

// acc block (MR queries x NV vectors of d_v) = alpha * acc + P [MR, keys c0..c1) . V rows.
// pt: P^T at the block's first query (P[r][c] = pt[c * ldpt + r]); v: V row 0, stride ldv.
template <class V, int MR, int NV>
ATTNBENCH_INLINE void pv_block(Index c0, Index c1, const float* pt, Index ldpt, const float* v,
                               Index ldv, float* acc_out, Index ld_acc, const float* alpha) {
  using Reg = typename V::Reg;
  constexpr int W = V::kWidth;
  Reg acc[MR][NV];
  ATTNBENCH_UNROLL
  for (int i = 0; i < MR; ++i) {
    const Reg a = V::broadcast(alpha + i);
    ATTNBENCH_UNROLL
    for (int j = 0; j < NV; ++j) {
      acc[i][j] = V::mul(a, V::load(acc_out + i * ld_acc + j * W));
    }
  }
  for (Index c = c0; c < c1; ++c) {
    Reg b[NV];
    ATTNBENCH_UNROLL
    for (int j = 0; j < NV; ++j) {
      b[j] = V::load(v + c * ldv + j * W);
    }
    const float* p = pt + c * ldpt;
    ATTNBENCH_UNROLL
    for (int i = 0; i < MR; ++i) {
      const Reg a = V::broadcast(p + i);
      ATTNBENCH_UNROLL
      for (int j = 0; j < NV; ++j) {
        acc[i][j] = V::fma(a, b[j], acc[i][j]);
      }
    }
  }
  ATTNBENCH_UNROLL
  for (int i = 0; i < MR; ++i) {
    ATTNBENCH_UNROLL
    for (int j = 0; j < NV; ++j) {
      V::store(acc_out + i * ld_acc + j * W, acc[i][j]);
    }
  }
}

// Runtime row count (1..MR) -> template instance.
template <class V, int MR>
void score_rows(int mr, Index d, const float* k, Index ldk, const float* qt, Index ldqt, float* st,
                Index ldst, float* colmax) {
  if constexpr (MR >= 1) {
    if (mr == MR) return score_block<V, MR, V::kScoreNv>(d, k, ldk, qt, ldqt, st, ldst, colmax);
    score_rows<V, MR - 1>(mr, d, k, ldk, qt, ldqt, st, ldst, colmax);
  }
}

template <class V, int MR, int NV>
void pv_cols(int nv, Index c0, Index c1, const float* pt, Index ldpt, const float* v, Index ldv,
             float* acc, Index ld_acc, const float* alpha) {
  if constexpr (NV >= 1) {
    if (nv == NV) return pv_block<V, MR, NV>(c0, c1, pt, ldpt, v, ldv, acc, ld_acc, alpha);
    pv_cols<V, MR, NV - 1>(nv, c0, c1, pt, ldpt, v, ldv, acc, ld_acc, alpha);
  }
}

template <class V, int MR>
void pv_rows(int mr, int nv, Index c0, Index c1, const float* pt, Index ldpt, const float* v,
             Index ldv, float* acc, Index ld_acc, const float* alpha) {
  if constexpr (MR >= 1) {
    if (mr == MR) return pv_cols<V, MR, V::kPvNv>(nv, c0, c1, pt, ldpt, v, ldv, acc, ld_acc, alpha);
    pv_rows<V, MR - 1>(mr, nv, c0, c1, pt, ldpt, v, ldv, acc, ld_acc, alpha);
  }
}

}  // namespace

// ---- the kernel ------------------------------------------------------------------------------

struct FlashTile::Impl {
  KernelIsa isa;
  Index max_br, max_bc, d, d_v;
  Layout lay;
  FloatBuffer buf;
  float *qt, *st, *acc, *vp, *m, *l, *alpha, *colmax;
  Index br = 0;
  float scale = 1.0f;

  Impl(KernelIsa isa_, Index max_br_, Index max_bc_, Index d_, Index d_v_)
      : isa(isa_),
        max_br(max_br_),
        max_bc(max_bc_),
        d(d_),
        d_v(d_v_),
        lay(layout_for(isa_, max_br_, max_bc_, d_, d_v_)),
        buf(lay.floats()) {
    float* p = buf.data;
    auto take = [&p](Index n) {
      float* r = p;
      p += round_up(n, 16);  // as Layout::floats()
      return r;
    };
    qt = take(lay.qt);
    st = take(lay.st);
    acc = take(lay.acc);
    vp = take(lay.vp);
    m = take(lay.state);
    l = take(lay.state);
    alpha = take(lay.state);
    colmax = take(lay.state);
  }

  template <class V>
  void begin(const float* q, Index ldq, Index br_, float scale_);
  template <class V>
  void add_keys(const float* k, Index ldk, const float* v, Index ldv, Index bc,
                const TileMask& mask);
  void finish(float* out, Index ld_out, float* lse) const;
};

template <class V>
void FlashTile::Impl::begin(const float* q, Index ldq, Index br_, float scale_) {
  constexpr Index kPanel = V::kScoreNv * V::kWidth;
  br = br_;
  scale = scale_;
  const Index nq = round_up(br, kPanel);
  // Q^T pre-scaled by scale * log2(e), so that scores are base-2 logits and the softmax needs
  // exp2 (no Cody-Waite reduction). m is kept in the same units. Padding columns [br, nq) are
  // zero so their scores are finite (they are never read).
  const float scale2 = float(double(scale) * 1.4426950408889634);
  for (Index kk = 0; kk < d; ++kk) {
    float* row = qt + kk * lay.ldqt;
    for (Index r = 0; r < br; ++r) row[r] = scale2 * q[r * ldq + kk];
    std::fill(row + br, row + nq, 0.0f);
  }
  std::fill(m, m + nq, kNegInf);
  std::fill(l, l + nq, 0.0f);
  for (Index r = 0; r < br; ++r) std::fill(acc + r * lay.ld_acc, acc + (r + 1) * lay.ld_acc, 0.0f);
}

template <class V>
void FlashTile::Impl::add_keys(const float* k, Index ldk, const float* v, Index ldv, Index bc,
                               const TileMask& mask) {
  using Reg = typename V::Reg;
  constexpr Index W = V::kWidth;
  constexpr Index kSmr = V::kScoreMr;
  constexpr Index kPanel = V::kScoreNv * W;
  constexpr Index kPmr = V::kPvMr;
  constexpr Index kPnv = V::kPvNv;
  // Local copies: stores through float* would otherwise force reloads of the members.
  float* const st_ = st;
  float* const m_ = m;
  float* const l_ = l;
  float* const alpha_ = alpha;
  float* const colmax_ = colmax;
  float* const acc_ = acc;
  const Index ldst = lay.ldqt, ld_acc = lay.ld_acc;
  const Index nq = round_up(br, kPanel);
  const Index nvec = (br + W - 1) / W;
  const Index dmin = mask.diag_min, dmax = mask.diag_max;
  const bool band = (bc - 1) > dmax || -(br - 1) < dmin;  // some pair excluded by the band
  const bool masked = band || mask.key_valid || mask.allowed;

  // 1. S^T = K (scale log2e Q)^T, skipping register blocks the band excludes entirely. Key
  //    blocks outermost: the block's K rows stay in L1 while the small Q^T streams past.
  std::fill(colmax_, colmax_ + nq, kNegInf);
  for (Index c0 = 0; c0 < bc; c0 += kSmr) {
    const int mr = int(std::min(kSmr, bc - c0));
    for (Index q0 = 0; q0 < nq; q0 += kPanel) {
      const Index lo = c0 - (q0 + kPanel - 1), hi = c0 + mr - 1 - q0;  // range of c - r
      if (lo > dmax || hi < dmin) continue;                            // filled with -inf below
      score_rows<V, V::kScoreMr>(mr, d, k + c0 * ldk, ldk, qt + q0, lay.ldqt, st_ + c0 * ldst + q0,
                                 ldst, colmax_ + q0);
    }
  }

  // 2. Masks: excluded pairs get -inf (never a finite penalty), and the column max is
  //    recomputed without them (a masked score must not set the reference).
  if (band) {
    for (Index c = 0; c < bc; ++c) {
      float* row = st_ + c * ldst;
      const Index r_lo = std::clamp<Index>(c - dmax, 0, nq);      // first allowed query
      const Index r_hi = std::clamp<Index>(c - dmin + 1, 0, nq);  // one past the last
      if (r_lo >= r_hi) {
        std::fill(row, row + nq, kNegInf);
      } else {
        std::fill(row, row + r_lo, kNegInf);
        std::fill(row + r_hi, row + nq, kNegInf);
      }
    }
  }
  if (mask.key_valid) {
    for (Index c = 0; c < bc; ++c) {
      if (!mask.key_valid[c]) std::fill(st_ + c * ldst, st_ + (c * ldst + nq), kNegInf);
    }
  }
  if (mask.allowed) {
    for (Index c = 0; c < bc; ++c) {
      for (Index r = 0; r < br; ++r) {
        if (!mask.allowed(mask.ctx, r, c)) st_[c * ldst + r] = kNegInf;
      }
    }
  }
  if (masked) {
    for (Index jv = 0; jv < nvec; ++jv) {
      Reg mx = V::set1(kNegInf);
      for (Index c = 0; c < bc; ++c) mx = V::max(mx, V::load(st_ + c * ldst + jv * W));
      V::store(colmax_ + jv * W, mx);
    }
  }

  // 3. Online softmax down the columns (base 2): m' = max(m, colmax), P = 2^(S - m'),
  //    alpha = 2^(m - m'), l = alpha l + sum_c P. A column with m' = -inf uses -FLT_MAX as its
  //    reference, so its P and alpha are exactly 0 and no -inf - (-inf) arises (the Check_inf
  //    guard). Groups of kGroup query vectors walk S^T row by row (sequential access).
  constexpr Index kGroup = 4;
  for (Index j0 = 0; j0 < nvec; j0 += kGroup) {
    const Index g = std::min(kGroup, nvec - j0);
    float* base = st_ + j0 * W;
    Reg ref[kGroup], sum[kGroup];
    for (Index u = 0; u < g; ++u) {
      const Index o = (j0 + u) * W;
      const Reg m_old = V::load(m_ + o);
      const Reg m_new = V::max(m_old, V::load(colmax_ + o));
      ref[u] = V::max(m_new, V::set1(std::numeric_limits<float>::lowest()));
      V::store(alpha_ + o, V::exp2_nonpos(V::sub(m_old, ref[u])));
      V::store(m_ + o, m_new);
      sum[u] = V::zero();
    }
    if (g == kGroup) {
      for (Index c = 0; c < bc; ++c) {
        float* row = base + c * ldst;
        ATTNBENCH_UNROLL
        for (int u = 0; u < kGroup; ++u) {
          const Reg p = V::exp2_nonpos(V::sub(V::load(row + u * W), ref[u]));
          V::store(row + u * W, p);
          sum[u] = V::add(sum[u], p);
        }
      }
    } else {
      for (Index c = 0; c < bc; ++c) {
        float* row = base + c * ldst;
        for (Index u = 0; u < g; ++u) {
          const Reg p = V::exp2_nonpos(V::sub(V::load(row + u * W), ref[u]));
          V::store(row + u * W, p);
          sum[u] = V::add(sum[u], p);
        }
      }
    }
    for (Index u = 0; u < g; ++u) {
      const Index o = (j0 + u) * W;
      V::store(l_ + o, V::fma(V::load(alpha_ + o), V::load(l_ + o), sum[u]));
    }
  }

  // 4. acc = alpha acc + P V. V is first copied chunk by chunk (kPnv vectors of columns) into
  //    contiguous panels: the P V kernel walks one chunk down all bc keys for every query
  //    block, and read in place (a row stride of d_v floats, typically 256 bytes) those rows
  //    would pile into a quarter of the L1 sets and be re-fetched from L2 each time. The copy
  //    also zero-pads d_v to whole vectors so no load runs past the end of v. It costs bc d_v
  //    moves against br bc d_v multiply-adds.
  const Index nvv = ld_acc / W;
  float* const vp_ = vp;
  for (Index j0 = 0; j0 < nvv; j0 += kPnv) {
    const Index nv = std::min(kPnv, nvv - j0), width = nv * W;
    const Index cols = std::min(width, d_v - j0 * W);  // the rest of the panel row stays zero
    float* panel = vp_ + j0 * W * max_bc;
    for (Index c = 0; c < bc; ++c) {
      std::copy(v + c * ldv + j0 * W, v + c * ldv + j0 * W + cols, panel + c * width);
    }
  }
  // Each query block only visits the keys its band allows (the other P entries are exactly 0).
  for (Index j0 = 0; j0 < nvv; j0 += kPnv) {
    const int nv = int(std::min(kPnv, nvv - j0));
    const float* panel = vp_ + j0 * W * max_bc;
    for (Index r0 = 0; r0 < br; r0 += kPmr) {
      const int mr = int(std::min(kPmr, br - r0));
      const Index c_lo = std::clamp<Index>(r0 + dmin, 0, bc);
      const Index c_hi = std::clamp<Index>(r0 + mr - 1 + dmax + 1, 0, bc);
      pv_rows<V, V::kPvMr>(mr, nv, c_lo, std::max(c_lo, c_hi), st_ + r0, ldst, panel, nv * W,
                           acc_ + r0 * ld_acc + j0 * W, ld_acc, alpha_ + r0);
    }
  }
}

void FlashTile::Impl::finish(float* out, Index ld_out, float* lse) const {
  for (Index r = 0; r < br; ++r) {
    float* o = out + r * ld_out;
    const float* a = acc + r * lay.ld_acc;
    if (l[r] > 0.0f) {
      const float inv = 1.0f / l[r];
      for (Index c = 0; c < d_v; ++c) o[c] = a[c] * inv;
      if (lse) lse[r] = float(double(m[r]) * 0.6931471805599453 + std::log(double(l[r])));
    } else {
      std::fill(o, o + d_v, 0.0f);
      if (lse) lse[r] = kNegInf;
    }
  }
}

// ---- public wrapper --------------------------------------------------------------------------

namespace {
void check_sizes(Index max_br, Index max_bc, Index d, Index d_v, KernelIsa isa) {
  if (max_br < 1 || max_bc < 1 || d < 1 || d_v < 1) {
    throw std::invalid_argument("FlashTile: sizes must be >= 1, got max_br=" +
                                std::to_string(max_br) + " max_bc=" + std::to_string(max_bc) +
                                " d=" + std::to_string(d) + " d_v=" + std::to_string(d_v));
  }
  if (!kernel_isa_available(isa)) {
    throw std::invalid_argument(
        std::string("FlashTile: kernel '") + to_string(isa) +
        "' is not available in this build (best: " + to_string(best_kernel_isa()) + ")");
  }
}
}  // namespace

FlashTile::FlashTile(Index max_br, Index max_bc, Index d, Index d_v, KernelIsa isa) {
  check_sizes(max_br, max_bc, d, d_v, isa);
  impl_ = std::make_unique<Impl>(isa, max_br, max_bc, d, d_v);
}
FlashTile::~FlashTile() = default;
FlashTile::FlashTile(FlashTile&&) noexcept = default;
FlashTile& FlashTile::operator=(FlashTile&&) noexcept = default;

std::size_t FlashTile::workspace_bytes(Index max_br, Index max_bc, Index d, Index d_v,
                                       KernelIsa isa) {
  return std::size_t(layout_for(isa, max_br, max_bc, d, d_v).floats()) * sizeof(float);
}

KernelIsa FlashTile::isa() const { return impl_->isa; }

// Dispatch once per call (per tile), never per element.
template <typename F>
void FlashTile::dispatch(F&& f) {
  switch (impl_->isa) {
#ifdef ATTNBENCH_HAVE_AVX512
    case KernelIsa::kAvx512:
      return f(simd::Avx512{});
#endif
#ifdef ATTNBENCH_HAVE_AVX2
    case KernelIsa::kAvx2:
      return f(simd::Avx2{});
    case KernelIsa::kAvx2Pair:
      return f(simd::Avx2Pair{});
#endif
    default:
      return f(simd::Scalar{});
  }
}

void FlashTile::begin(const float* q, Index ldq, Index br, float scale) {
  assert(br >= 1 && br <= impl_->max_br);
  dispatch([&](auto backend) { impl_->begin<decltype(backend)>(q, ldq, br, scale); });
}

void FlashTile::add_key_range(const float* k, Index ldk, const float* v, Index ldv, Index n,
                              Index tile_keys, const std::uint8_t* key_valid) {
  for (Index j0 = 0; j0 < n; j0 += tile_keys) {
    const Index bc = std::min(tile_keys, n - j0);
    TileMask mask;
    if (key_valid) {
      const std::uint8_t* flags = key_valid + j0;
      const Index allowed = std::count_if(flags, flags + bc, [](std::uint8_t f) { return f != 0; });
      if (allowed == 0) continue;
      if (allowed < bc) mask.key_valid = flags;
    }
    add_keys(k + j0 * ldk, ldk, v + j0 * ldv, ldv, bc, mask);
  }
}

void FlashTile::add_keys(const float* k, Index ldk, const float* v, Index ldv, Index bc,
                         const TileMask& mask) {
  assert(bc >= 1 && bc <= impl_->max_bc);
  dispatch([&](auto backend) { impl_->add_keys<decltype(backend)>(k, ldk, v, ldv, bc, mask); });
}

void FlashTile::finish(float* out, Index ld_out, float* lse) const {
  impl_->finish(out, ld_out, lse);
}

}  // namespace attnbench
