// Feature maps of the kernel methods in the approximate family: elu + 1 (linear attention) and
// FAVOR+ positive / hyperbolic random features (Performer, Scatterbrain), with the random
// projections they draw. Free functions over Eigen views, so tests can call each step directly.
#pragma once

#include <string>

#include "attention/random.h"
#include "attention/tensor.h"

namespace attnbench {

// phi(x) = elu(x) + 1 elementwise: x + 1 for x > 0, exp(x) otherwise. x and out are (rows, d).
void elu_plus_one(ConstMatRef x, MatRef out);

enum class FavorKind {
  kPositive,    // phi_f = exp(<w_f, x'> - |x'|^2 / 2), f = 1..m
  kHyperbolic,  // pairs exp(+<w_f, x'> - |x'|^2 / 2), exp(-<w_f, x'> - |x'|^2 / 2), f = 1..m/2
};
FavorKind parse_favor_kind(const std::string& name);

// Random directions drawn for `features` output features (m for positive, m/2 for hyperbolic).
Index favor_directions(Index features, FavorKind kind);

// W (directions, d). Orthogonal: stacked blocks of d orthonormal rows, each block the transposed
// Q factor of the QR of a d x d Gaussian with Q's columns multiplied by sign(diag R), so the
// block is Haar distributed (the reference codes skip this sign fix); every row is then rescaled
// by the norm of an independent N(0, I_d) vector (chi_d), so each row is marginally N(0, I_d)
// while rows within a block stay orthogonal. Otherwise iid N(0, 1) entries.
RowMatrix draw_favor_projection(Index directions, Index d, bool orthogonal, Rng& rng);

// The directions a variant draws for head `head`: draw_favor_projection on the stream
// (seed, head), so a test can rebuild the exact features a variant used.
RowMatrix favor_projection_for_head(std::uint64_t seed, Index head, Index features, FavorKind kind,
                                    Index d, bool orthogonal);

// Feature exponents u (rows, features) of x (rows, d): u_if = +-<w_f, x'_i> - |x'_i|^2 / 2 with
// x' = sqrt(scale) x, given w_scaled = sqrt(scale) W (directions, d). If proj_max is not null it
// receives, per row, the largest projection +-<w_f, x'_i> (the references' stabiliser).
void favor_exponents(ConstMatRef x, ConstMatRef w_scaled, double scale, FavorKind kind, MatRef u,
                     float* proj_max);

// The feature map as the paper writes it, for tests:
//   phi(x)_f = features^(-1/2) (exp(u_f - c) + epsilon),
// with c = 0 (unstabilised) or c = the row's largest projection (the per-row query stabiliser).
// E[phi(x)^T phi(y)] = exp(scale <x, y>) when epsilon = 0 and c = 0. W is unscaled (directions, d).
RowMatrix favor_feature_map(ConstMatRef x, ConstMatRef w, double scale, FavorKind kind,
                            double epsilon, bool stabilise);

}  // namespace attnbench
