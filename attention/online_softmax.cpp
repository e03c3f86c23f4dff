#include "attention/online_softmax.h"

#include <algorithm>
#include <cmath>

#include "attention/kernels/simd.h"

namespace attnbench {
namespace {

// row[c] = exp(row[c] - ref) for c < n; returns the sum. Vectorised with the widest backend.
template <class V>
float exp_shift_sum_with(float* row, Index n, float ref) {
  constexpr Index W = V::kWidth;
  float buf[W];
  typename V::Reg sum = V::zero();
  const typename V::Reg r = V::set1(ref);
  Index c = 0;
  for (; c + W <= n; c += W) {
    const typename V::Reg p = V::exp(V::sub(V::load(row + c), r));
    V::store(row + c, p);
    sum = V::add(sum, p);
  }
  V::store(buf, sum);
  float total = 0.0f;
  for (Index i = 0; i < W; ++i) total += buf[i];
  for (; c < n; ++c) {
    row[c] = simd::Scalar::exp(row[c] - ref);
    total += row[c];
  }
  return total;
}

float exp_shift_sum(float* row, Index n, float ref) {
#if defined(ATTNBENCH_HAVE_AVX512)
  return exp_shift_sum_with<simd::Avx512>(row, n, ref);
#elif defined(ATTNBENCH_HAVE_AVX2)
  return exp_shift_sum_with<simd::Avx2>(row, n, ref);
#else
  return exp_shift_sum_with<simd::Scalar>(row, n, ref);
#endif
}

}  // namespace

void SoftmaxTile::reset() {
  std::fill(m, m + br, kNegInfF);
  std::fill(l, l + br, 0.0f);
  for (Index r = 0; r < br; ++r) std::fill(acc + r * ld_acc, acc + r * ld_acc + d_v, 0.0f);
}

void score_tile(const float* q, Index ldq, Index br, const float* k, Index ldk, Index bc, Index d,
                float scale, float* s, Index lds) {
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<const RowMatrix, 0, Stride> qm(q, br, d, Stride(ldq));
  Eigen::Map<const RowMatrix, 0, Stride> km(k, bc, d, Stride(ldk));
  Eigen::Map<RowMatrix, 0, Stride> sm(s, br, bc, Stride(lds));
  sm.noalias() = scale * (qm * km.transpose());
}

void online_softmax_update(SoftmaxTile& tile, float* s, Index lds, Index bc, const float* v,
                           Index ldv) {
  using Stride = Eigen::OuterStride<>;
  for (Index r = 0; r < tile.br; ++r) {
    float* row = s + r * lds;
    float tile_max = kNegInfF;
    for (Index c = 0; c < bc; ++c) tile_max = std::max(tile_max, row[c]);
    const float m_old = tile.m[r];
    const float m_new = std::max(m_old, tile_max);
    const float ref = m_new == kNegInfF ? 0.0f : m_new;  // Check_inf guard
    const float sum = exp_shift_sum(row, bc, ref);
    const float alpha = std::exp(m_old - ref);  // 0 when m_old = -inf
    tile.l[r] = alpha * tile.l[r] + sum;
    tile.m[r] = m_new;
    if (alpha != 1.0f) {
      float* a = tile.acc + r * tile.ld_acc;
      for (Index c = 0; c < tile.d_v; ++c) a[c] *= alpha;
    }
  }
  Eigen::Map<const RowMatrix, 0, Stride> pm(s, tile.br, bc, Stride(lds));
  Eigen::Map<const RowMatrix, 0, Stride> vm(v, bc, tile.d_v, Stride(ldv));
  Eigen::Map<RowMatrix, 0, Stride> am(tile.acc, tile.br, tile.d_v, Stride(tile.ld_acc));
  am.noalias() += pm * vm;
}

void online_softmax_finish(const SoftmaxTile& tile, float* out, Index ld_out, float* lse) {
  for (Index r = 0; r < tile.br; ++r) {
    float* o = out + r * ld_out;
    const float* a = tile.acc + r * tile.ld_acc;
    const float l = tile.l[r];
    if (l > 0.0f) {
      const float inv = 1.0f / l;
      for (Index c = 0; c < tile.d_v; ++c) o[c] = a[c] * inv;
      if (lse) lse[r] = tile.m[r] + std::log(l);
    } else {
      std::fill(o, o + tile.d_v, 0.0f);
      if (lse) lse[r] = kNegInfF;
    }
  }
}

}  // namespace attnbench
