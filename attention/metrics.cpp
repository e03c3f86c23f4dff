#include "attention/metrics.h"

#include <algorithm>
#include <cmath>

namespace attnbench {

Json ErrorMetrics::to_json() const {
  return {{"heads", heads},
          {"rows_per_head", rows_per_head},
          {"rows_compared", rows_compared},
          {"rows_fully_masked", rows_fully_masked},
          {"rows_cosine_skipped", rows_cosine_skipped},
          {"nonfinite", nonfinite},
          {"rel_fro", rel_fro},
          {"rel_fro_mean", rel_fro_mean},
          {"rel_fro_max", rel_fro_max},
          {"max_abs", max_abs},
          {"max_abs_over_max_v", max_abs_over_max_v},
          {"cos_mean", cos_mean},
          {"cos_p5", cos_p5},
          {"cos_min", cos_min},
          {"rel_uniform", rel_uniform},
          {"masked_rows_max_abs", masked_rows_max_abs},
          {"exact_stats",
           {{"entropy_ratio", entropy_ratio},
            {"n_eff_ratio", n_eff_ratio},
            {"max_weight", max_weight}}}};
}

ErrorMetrics compute_error(const Tensor4& out, const Tensor4& v,
                           const std::vector<HeadReference>& ref) {
  ErrorMetrics m;
  const Index heads = out.heads();
  m.heads = static_cast<Index>(ref.size());
  m.rows_per_head = ref.empty() ? 0 : static_cast<Index>(ref.front().rows.size());

  double max_v = 0;
  for (float x : v.storage()) max_v = std::max(max_v, double(std::fabs(x)));
  double v_fro = 0;
  for (float x : v.storage()) v_fro += double(x) * x;
  v_fro = std::sqrt(v_fro);

  double diff2_all = 0, ref2_all = 0, unif2_all = 0;
  double rel_sum = 0;
  Index rel_count = 0;
  std::vector<double> cosines;
  double ent_sum = 0, neff_sum = 0, maxw_sum = 0;
  Index stat_rows = 0;

  for (std::size_t bh = 0; bh < ref.size(); ++bh) {
    const HeadReference& r = ref[bh];
    auto o = out.head(static_cast<Index>(bh) / heads, static_cast<Index>(bh) % heads);
    double diff2 = 0, ref2 = 0;
    for (std::size_t t = 0; t < r.rows.size(); ++t) {
      const Index i = r.rows[t];
      if (r.allowed[t] == 0) {
        ++m.rows_fully_masked;
        for (Index c = 0; c < o.cols(); ++c) {
          const double x = o(i, c);
          m.masked_rows_max_abs =
              std::max(m.masked_rows_max_abs, std::isfinite(x) ? std::fabs(x) : INFINITY);
          if (!std::isfinite(x)) ++m.nonfinite;
        }
        continue;
      }
      ++m.rows_compared;
      double dot = 0, n_out = 0, n_ref = 0, row_diff2 = 0, row_unif2 = 0;
      for (Index c = 0; c < o.cols(); ++c) {
        const double x = o(i, c), y = r.out(t, c), u = r.uniform(t, c);
        if (!std::isfinite(x)) ++m.nonfinite;
        const double e = x - y;
        row_diff2 += e * e;
        row_unif2 += (u - y) * (u - y);
        m.max_abs = std::max(m.max_abs, std::isfinite(e) ? std::fabs(e) : INFINITY);
        dot += x * y;
        n_out += x * x;
        n_ref += y * y;
      }
      diff2 += row_diff2;
      ref2 += n_ref;
      unif2_all += row_unif2;
      if (std::sqrt(n_ref) < 1e-12 * v_fro || n_out == 0) {
        ++m.rows_cosine_skipped;
      } else {
        cosines.push_back(dot / std::sqrt(n_out * n_ref));
      }
      if (r.allowed[t] > 1) {
        const double log_a = std::log(double(r.allowed[t]));
        ent_sum += r.entropy[t] / log_a;
        neff_sum += (1.0 / r.sum_p2[t]) / double(r.allowed[t]);
        maxw_sum += r.max_weight[t];
        ++stat_rows;
      }
    }
    diff2_all += diff2;
    ref2_all += ref2;
    if (ref2 > 0) {
      const double rel = std::sqrt(diff2 / ref2);
      rel_sum += rel;
      ++rel_count;
      m.rel_fro_max = std::max(m.rel_fro_max, rel);
    }
  }
  m.rel_fro = ref2_all > 0 ? std::sqrt(diff2_all / ref2_all) : 0.0;
  m.rel_fro_mean = rel_count > 0 ? rel_sum / double(rel_count) : 0.0;
  m.max_abs_over_max_v = max_v > 0 ? m.max_abs / max_v : 0.0;
  m.rel_uniform = unif2_all > 0 ? std::sqrt(diff2_all / unif2_all) : 0.0;
  if (!cosines.empty()) {
    std::sort(cosines.begin(), cosines.end());
    double sum = 0;
    for (double c : cosines) sum += c;
    m.cos_mean = sum / double(cosines.size());
    m.cos_min = cosines.front();
    m.cos_p5 = cosines[static_cast<std::size_t>(0.05 * double(cosines.size() - 1))];
  }
  if (stat_rows > 0) {
    m.entropy_ratio = ent_sum / double(stat_rows);
    m.n_eff_ratio = neff_sum / double(stat_rows);
    m.max_weight = maxw_sum / double(stat_rows);
  }
  if (m.nonfinite > 0) {
    m.rel_fro = m.rel_fro_max = m.rel_fro_mean = m.rel_uniform = INFINITY;
  }
  return m;
}

}  // namespace attnbench
