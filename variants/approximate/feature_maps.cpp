#include "variants/approximate/feature_maps.h"

#include <Eigen/QR>
#include <cmath>
#include <stdexcept>

namespace attnbench {

void elu_plus_one(ConstMatRef x, MatRef out) {
  // exp(min(x, 0)) + max(x, 0) is elu(x) + 1 on both branches and keeps Eigen's vectorised exp
  // (a select() over the two branches falls back to scalar expf).
  const auto a = x.array();
  out.array() = a.min(0.0f).exp() + a.max(0.0f);
}

FavorKind parse_favor_kind(const std::string& name) {
  if (name == "positive") return FavorKind::kPositive;
  if (name == "hyperbolic") return FavorKind::kHyperbolic;
  throw std::invalid_argument("unknown FAVOR+ feature kind '" + name +
                              "', expected positive or hyperbolic");
}

Index favor_directions(Index features, FavorKind kind) {
  return kind == FavorKind::kHyperbolic ? features / 2 : features;
}

RowMatrix draw_favor_projection(Index directions, Index d, bool orthogonal, Rng& rng) {
  RowMatrix w(directions, d);
  if (!orthogonal) {
    for (Index i = 0; i < w.size(); ++i) w.data()[i] = float(rng.normal());
    return w;
  }
  for (Index r0 = 0; r0 < directions; r0 += d) {
    Eigen::MatrixXd g(d, d);
    for (Index i = 0; i < g.size(); ++i) g.data()[i] = rng.normal();
    Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
    Eigen::MatrixXd q = qr.householderQ() * Eigen::MatrixXd::Identity(d, d);
    const Eigen::MatrixXd& r = qr.matrixQR();
    // Haar fix: QR is unique only up to column signs; fixing diag(R) > 0 makes Q Haar.
    for (Index c = 0; c < d; ++c) {
      if (r(c, c) < 0) q.col(c) = -q.col(c);
    }
    const Index rows = std::min(d, directions - r0);
    for (Index i = 0; i < rows; ++i) {
      double norm2 = 0;  // chi_d: the norm of an independent N(0, I_d) vector
      for (Index c = 0; c < d; ++c) {
        const double g2 = rng.normal();
        norm2 += g2 * g2;
      }
      w.row(r0 + i) = (std::sqrt(norm2) * q.col(i).transpose()).cast<float>();
    }
  }
  return w;
}

RowMatrix favor_projection_for_head(std::uint64_t seed, Index head, Index features, FavorKind kind,
                                    Index d, bool orthogonal) {
  Rng rng(seed, 0xfa7025, std::uint64_t(head));
  return draw_favor_projection(favor_directions(features, kind), d, orthogonal, rng);
}

void favor_exponents(ConstMatRef x, ConstMatRef w_scaled, double scale, FavorKind kind, MatRef u,
                     float* proj_max) {
  const Index rows = x.rows(), dirs = w_scaled.rows();
  auto proj = u.leftCols(dirs);
  proj.noalias() = x * w_scaled.transpose();
  const float half = float(0.5 * scale);
  for (Index i = 0; i < rows; ++i) {
    const float norm = half * x.row(i).squaredNorm();
    auto row = u.row(i);
    if (kind == FavorKind::kHyperbolic) {
      if (proj_max) proj_max[i] = row.head(dirs).cwiseAbs().maxCoeff();
      row.tail(dirs).array() = -row.head(dirs).array() - norm;
      row.head(dirs).array() -= norm;
    } else {
      if (proj_max) proj_max[i] = row.maxCoeff();
      row.array() -= norm;
    }
  }
}

RowMatrix favor_feature_map(ConstMatRef x, ConstMatRef w, double scale, FavorKind kind,
                            double epsilon, bool stabilise) {
  const Index features = kind == FavorKind::kHyperbolic ? 2 * w.rows() : w.rows();
  RowMatrix ws = float(std::sqrt(scale)) * w;
  RowMatrix u(x.rows(), features);
  std::vector<float> proj_max(x.rows());
  favor_exponents(x, ws, scale, kind, u, proj_max.data());
  RowMatrix phi(x.rows(), features);
  const double norm = 1.0 / std::sqrt(double(features));
  for (Index i = 0; i < x.rows(); ++i) {
    const double c = stabilise ? proj_max[i] : 0.0;
    for (Index f = 0; f < features; ++f) {
      phi(i, f) = float(norm * (std::exp(double(u(i, f)) - c) + epsilon));
    }
  }
  return phi;
}

}  // namespace attnbench
