#include "attention/reference.h"

#include <tbb/blocked_range.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "attention/parallel.h"
#include "attention/random.h"

namespace attnbench {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr Index kRowTile = 32;
constexpr Index kKeyTile = 512;

// Double copies of one head's keys and values (O(n*d)), shared by all row tiles of that head.
struct HeadOperands {
  RowMatrixD k;  // (n_k, d); for shared-QK the normalised queries
  RowMatrixD v;  // (n_k, d_v)
};

HeadOperands make_operands(ConstMatRef q, ConstMatRef k, ConstMatRef v, ReferenceKind kind) {
  HeadOperands ops;
  if (kind == ReferenceKind::kSharedQkSoftmax) {
    ops.k = q.cast<double>();
    for (Index j = 0; j < ops.k.rows(); ++j) {
      const double norm = ops.k.row(j).norm();
      // A zero query has no direction; its key stays zero (logit 0 against every query).
      if (norm > 0) ops.k.row(j) /= norm;
    }
  } else {
    ops.k = k.cast<double>();
  }
  ops.v = v.cast<double>();
  return ops;
}

// Rows [r0, r1) of `rows` against all keys, streaming over key tiles with the online softmax.
void reference_rows(ConstMatRef q, const HeadOperands& ops, std::span<const std::uint8_t> valid,
                    const Problem& p, ReferenceKind kind, std::span<const Index> rows, Index r0,
                    Index r1, HeadReference& res, const ElementMask& extra, Index bh) {
  const Index br = r1 - r0, n_k = ops.k.rows(), d_v = ops.v.cols();
  const double scale = p.effective_scale();
  const bool shared = kind == ReferenceKind::kSharedQkSoftmax;

  RowMatrixD qb(br, q.cols());
  for (Index r = 0; r < br; ++r) qb.row(r) = q.row(rows[r0 + r]).cast<double>();

  std::vector<double> m(br, kNegInf), l(br, 0.0), es(br, 0.0), e2(br, 0.0);
  std::vector<Index> count(br, 0);
  RowMatrixD acc = RowMatrixD::Zero(br, d_v);
  RowMatrixD usum = RowMatrixD::Zero(br, d_v);
  RowMatrixD s(br, kKeyTile), w(br, kKeyTile), ind(br, kKeyTile);

  for (Index j0 = 0; j0 < n_k; j0 += kKeyTile) {
    const Index bc = std::min(kKeyTile, n_k - j0);
    s.leftCols(bc).noalias() = scale * (qb * ops.k.middleRows(j0, bc).transpose());
    for (Index r = 0; r < br; ++r) {
      const Index i = rows[r0 + r];
      double tile_max = kNegInf;
      for (Index c = 0; c < bc; ++c) {
        const Index j = j0 + c;
        const bool ok = (valid.empty() || valid[j] != 0) && p.allowed(i, j) &&
                        !(shared && j == i) && (!extra || extra(bh, i, j));
        ind(r, c) = ok ? 1.0 : 0.0;
        if (!ok) s(r, c) = kNegInf;
        tile_max = std::max(tile_max, s(r, c));
      }
      if (tile_max == kNegInf) {
        w.row(r).head(bc).setZero();
        continue;
      }
      const double m_new = std::max(m[r], tile_max);
      const double alpha = std::exp(m[r] - m_new);  // 0 when m was -inf
      double tile_l = 0, tile_es = 0, tile_e2 = 0;
      for (Index c = 0; c < bc; ++c) {
        if (ind(r, c) == 0.0) {
          w(r, c) = 0.0;
          continue;
        }
        const double x = s(r, c) - m_new;
        const double e = std::exp(x);
        w(r, c) = e;
        tile_l += e;
        tile_es += e * x;
        tile_e2 += e * e;
        ++count[r];
      }
      // Rescale the running sums to the new maximum: sum e^(s-m')(s-m') = a*(es + (m-m')*l).
      es[r] = (m[r] == kNegInf ? 0.0 : alpha * (es[r] + (m[r] - m_new) * l[r])) + tile_es;
      e2[r] = alpha * alpha * e2[r] + tile_e2;
      l[r] = alpha * l[r] + tile_l;
      acc.row(r) *= alpha;
      m[r] = m_new;
    }
    acc.noalias() += w.leftCols(bc) * ops.v.middleRows(j0, bc);
    usum.noalias() += ind.leftCols(bc) * ops.v.middleRows(j0, bc);
  }

  for (Index r = 0; r < br; ++r) {
    const Index out_row = r0 + r;
    const Index i = rows[out_row];
    if (count[r] == 0 && shared && i < n_k && (valid.empty() || valid[i] != 0) && p.allowed(i, i) &&
        (!extra || extra(bh, i, i))) {
      // Shared-QK: self is the only allowed key, so the row attends to itself alone.
      res.out.row(out_row) = ops.v.row(i);
      res.uniform.row(out_row) = ops.v.row(i);
      res.lse[out_row] = scale * qb.row(r).dot(ops.k.row(i));
      res.entropy[out_row] = 0.0;
      res.sum_p2[out_row] = 1.0;
      res.max_weight[out_row] = 1.0;
      res.allowed[out_row] = 1;
      continue;
    }
    res.allowed[out_row] = count[r];
    if (count[r] == 0) {
      res.out.row(out_row).setZero();
      res.uniform.row(out_row).setZero();
      res.lse[out_row] = kNegInf;
      res.entropy[out_row] = 0.0;
      res.sum_p2[out_row] = 0.0;
      res.max_weight[out_row] = 0.0;
      continue;
    }
    res.out.row(out_row) = acc.row(r) / l[r];
    res.uniform.row(out_row) = usum.row(r) / double(count[r]);
    res.lse[out_row] = m[r] + std::log(l[r]);
    res.entropy[out_row] = std::log(l[r]) - es[r] / l[r];
    res.sum_p2[out_row] = e2[r] / (l[r] * l[r]);
    res.max_weight[out_row] = 1.0 / l[r];
  }
}

void prepare(HeadReference& res, std::span<const Index> rows, Index d_v) {
  const Index n = static_cast<Index>(rows.size());
  res.rows.assign(rows.begin(), rows.end());
  res.out.resize(n, d_v);
  res.uniform.resize(n, d_v);
  res.lse.assign(n, 0.0);
  res.entropy.assign(n, 0.0);
  res.sum_p2.assign(n, 0.0);
  res.max_weight.assign(n, 0.0);
  res.allowed.assign(n, 0);
}

void check_rows(std::span<const Index> rows, Index n_q) {
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] < 0 || rows[r] >= n_q) {
      throw std::invalid_argument("reference: row " + std::to_string(rows[r]) + " outside [0, " +
                                  std::to_string(n_q) + ")");
    }
  }
}

void check_kind(const Problem& p, ReferenceKind kind) {
  if (kind == ReferenceKind::kSharedQkSoftmax && p.n_q != p.n_k) {
    throw std::invalid_argument("reference: shared-QK attention needs n_q = n_k, got n_q = " +
                                std::to_string(p.n_q) + ", n_k = " + std::to_string(p.n_k));
  }
}

}  // namespace

void reference_head(ConstMatRef q, ConstMatRef k, ConstMatRef v,
                    std::span<const std::uint8_t> key_valid, const Problem& problem,
                    ReferenceKind kind, std::span<const Index> rows, HeadReference& result,
                    const ElementMask& extra, Index bh) {
  check_kind(problem, kind);
  check_rows(rows, q.rows());
  prepare(result, rows, v.cols());
  const HeadOperands ops = make_operands(q, k, v, kind);
  const Index n = static_cast<Index>(rows.size());
  attnbench::parallel_for(
      tbb::blocked_range<Index>(0, (n + kRowTile - 1) / kRowTile, 1), [&](const auto& range) {
        for (Index t = range.begin(); t < range.end(); ++t) {
          const Index r0 = t * kRowTile, r1 = std::min(n, r0 + kRowTile);
          reference_rows(q, ops, key_valid, problem, kind, rows, r0, r1, result, extra, bh);
        }
      });
}

std::vector<HeadReference> reference_attention(const Tensor4& q, const Tensor4& k, const Tensor4& v,
                                               const KeyMask& mask, const Problem& problem,
                                               ReferenceKind kind, std::span<const Index> rows,
                                               const ElementMask& extra) {
  check_kind(problem, kind);
  check_rows(rows, problem.n_q);
  const Index heads = problem.heads, total = problem.batch * heads;
  std::vector<HeadReference> result(total);
  std::vector<HeadOperands> ops(total);
  attnbench::parallel_for(Index(0), total, [&](Index bh) {
    prepare(result[bh], rows, problem.d_v);
    ops[bh] = make_operands(q.head(bh / heads, bh % heads), k.head(bh / heads, bh % heads),
                            v.head(bh / heads, bh % heads), kind);
  });
  const Index n = static_cast<Index>(rows.size());
  const Index tiles = (n + kRowTile - 1) / kRowTile;
  attnbench::parallel_for(tbb::blocked_range<Index>(0, total * tiles, 1), [&](const auto& range) {
    for (Index t = range.begin(); t < range.end(); ++t) {
      const Index bh = t / tiles, r0 = (t % tiles) * kRowTile;
      reference_rows(q.head(bh / heads, bh % heads), ops[bh], mask.row(bh / heads), problem, kind,
                     rows, r0, std::min(n, r0 + kRowTile), result[bh], extra, bh);
    }
  });
  return result;
}

std::vector<Index> all_rows(Index n) {
  std::vector<Index> rows(n);
  std::iota(rows.begin(), rows.end(), Index(0));
  return rows;
}

std::vector<Index> select_rows(Index n_q, Index max_all_rows, Index sample, std::uint64_t seed) {
  if (n_q <= max_all_rows || sample >= n_q) return all_rows(n_q);
  // Floyd's algorithm: `sample` distinct rows without materialising a permutation of n_q.
  Rng rng(seed, 0x5eed);
  std::vector<Index> chosen;
  chosen.reserve(sample);
  for (Index j = n_q - sample; j < n_q; ++j) {
    const Index t = static_cast<Index>(rng.uniform_int(static_cast<std::uint64_t>(j + 1)));
    if (std::find(chosen.begin(), chosen.end(), t) == chosen.end()) {
      chosen.push_back(t);
    } else {
      chosen.push_back(j);
    }
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

}  // namespace attnbench
