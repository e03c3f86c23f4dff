// Workload generators (reference/variants.md §8): Gaussian with temperature, clustered, local
// decay, low-rank / piecewise-constant, attention sink, small-norm; and Q/K/V from files.
// Time O(batch·heads·n·d) (plus O(n·d·r) for low_rank's basis), memory O(the inputs).
// Distributions follow §8; the sink and local-decay constructions follow its definitions.
#include "harness/data/workloads.h"

#include <Eigen/QR>
#include <cmath>
#include <numbers>
#include <sstream>
#include <stdexcept>

#include "attention/parallel.h"
#include "attention/random.h"
#include "harness/data/tensor_io.h"
#include "harness/data/ziggurat.h"

namespace attnbench {
namespace {

// Independent streams for the parts of one head. Q, K and V have their own streams so that,
// e.g., changing `values` never changes Q or K.
enum StreamTag : std::uint64_t { kStreamQ = 1, kStreamK = 2, kStreamV = 3, kStreamShared = 4 };

Rng head_rng(std::uint64_t seed, StreamTag tag, Index b, Index h) {
  std::uint64_t state = seed ^ (0xA0761D6478BD642Full * std::uint64_t(tag));
  return Rng(splitmix64(state), std::uint64_t(b), std::uint64_t(h));
}

[[noreturn]] void reject(const std::string& workload, const std::string& key, const Json& value,
                         const std::string& expected, const Problem& p) {
  throw std::invalid_argument("workload '" + workload + "': parameter '" + key +
                              "' = " + value.dump() + ", expected " + expected + " (problem " +
                              p.to_string() + ")");
}

double gauss(Rng& rng) { return Ziggurat::normal(rng); }

void fill_normal(Rng& rng, MatMap m, double scale) {
  for (Index i = 0; i < m.rows(); ++i) {
    for (Index c = 0; c < m.cols(); ++c) m(i, c) = float(scale * gauss(rng));
  }
}

// One (b, h) slice: the generator writes q (n_q, d) and k (n_k, d).
struct HeadTask {
  const ParamSet& params;
  const Problem& p;
  std::uint64_t seed;
  Index b, h;
  MatMap q, k;
  Rng rng(StreamTag tag) const { return head_rng(seed, tag, b, h); }
  bool shared() const {
    return params.json().contains("shared_qk") && params.get_bool("shared_qk");
  }
};

using Generator = void (*)(HeadTask&);

// ---------------------------------------------------------------------------------------------

void gen_gaussian(HeadTask& t) {
  const double tau = t.params.get_double("temperature");
  Rng rq = t.rng(kStreamQ);
  if (t.shared()) {
    // Q = K = sqrt(tau)·G keeps the off-diagonal logits' standard deviation at tau.
    fill_normal(rq, t.q, std::sqrt(tau));
    t.k = t.q;
    return;
  }
  Rng rk = t.rng(kStreamK);
  fill_normal(rq, t.q, tau);
  fill_normal(rk, t.k, 1.0);
}

void gen_clustered(HeadTask& t) {
  const Index clusters = t.params.get_int("clusters");
  const double a = t.params.get_double("scale");
  const double sigma = t.params.get_double("sigma");
  const Index d = t.p.d;
  Rng rs = t.rng(kStreamShared);
  RowMatrixD centres(clusters, d);
  for (Index c = 0; c < clusters; ++c) {
    for (Index l = 0; l < d; ++l) centres(c, l) = gauss(rs);
  }
  auto fill = [&](Rng& rng, MatMap m) {
    for (Index i = 0; i < m.rows(); ++i) {
      const Index c = Index(rng.uniform_int(std::uint64_t(clusters)));
      for (Index l = 0; l < d; ++l) m(i, l) = float(a * centres(c, l) + sigma * gauss(rng));
    }
  };
  Rng rq = t.rng(kStreamQ);
  fill(rq, t.q);
  if (t.shared()) {
    t.k = t.q;
    return;
  }
  Rng rk = t.rng(kStreamK);
  fill(rk, t.k);
}

// Frequencies geometric between 2π/(4 n_k) and 2π/4 (one when F = 1: their geometric mean).
std::vector<double> decay_frequencies(Index n_k, Index features) {
  const double lo = 2.0 * std::numbers::pi / (4.0 * double(n_k)), hi = std::numbers::pi / 2.0;
  std::vector<double> w(features);
  for (Index f = 0; f < features; ++f) {
    const double x = features == 1 ? 0.5 : double(f) / double(features - 1);
    w[f] = lo * std::pow(hi / lo, x);
  }
  return w;
}

void gen_local_decay(HeadTask& t) {
  const double alpha = t.params.get_double("alpha");
  const Index d = t.p.d, features = d / 2;
  const std::vector<double> omega = decay_frequencies(t.p.n_k, features);
  // <q_i, k_j> = c²·Σ_f cos(ω_f (pos_i − j)) and c² = α√d / F give logits (α/F)·Σ_f cos(·).
  const double c = std::sqrt(alpha * std::sqrt(double(d)) / double(features));
  // A random phase per frequency, shared by q and k, leaves every logit unchanged but makes
  // heads differ (LSH, k-means and random features see different vectors per head).
  Rng rs = t.rng(kStreamShared);
  std::vector<double> phase(features);
  for (auto& ph : phase) ph = 2.0 * std::numbers::pi * rs.uniform();
  // cos and sin advance by a rotation per row (2 multiply-adds instead of 2 libm calls); they
  // are recomputed exactly every kAnchor rows, so the drift stays below ~kAnchor·eps in double.
  constexpr Index kAnchor = 256;
  std::vector<double> cs(features), sn(features), rot_c(features), rot_s(features);
  for (Index f = 0; f < features; ++f) {
    rot_c[f] = std::cos(omega[f]);
    rot_s[f] = std::sin(omega[f]);
  }
  auto fill = [&](MatMap m, Index offset) {
    for (Index i = 0; i < m.rows(); ++i) {
      for (Index f = 0; f < features; ++f) {
        if (i % kAnchor == 0) {
          const double x = omega[f] * double(i + offset) + phase[f];
          cs[f] = std::cos(x);
          sn[f] = std::sin(x);
        } else {
          const double c_next = cs[f] * rot_c[f] - sn[f] * rot_s[f];
          sn[f] = sn[f] * rot_c[f] + cs[f] * rot_s[f];
          cs[f] = c_next;
        }
        m(i, 2 * f) = float(c * cs[f]);
        m(i, 2 * f + 1) = float(c * sn[f]);
      }
      if (d % 2) m(i, d - 1) = 0.0f;
    }
  };
  // Bottom-right alignment: query i sits at position i + (n_k − n_q), as in the causal mask.
  fill(t.q, t.p.n_k - t.p.n_q);
  if (t.shared()) {
    t.k = t.q;
    return;
  }
  fill(t.k, 0);
}

// d×r matrix with orthonormal columns, Haar-distributed.
RowMatrixD random_orthonormal(Rng& rng, Index d, Index r) {
  Eigen::MatrixXd g(d, r);
  for (Index i = 0; i < d; ++i) {
    for (Index c = 0; c < r; ++c) g(i, c) = gauss(rng);
  }
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  Eigen::MatrixXd basis = qr.householderQ() * Eigen::MatrixXd::Identity(d, r);
  for (Index c = 0; c < r; ++c) {
    if (qr.matrixQR()(c, c) < 0) basis.col(c) *= -1.0;
  }
  return basis;
}

void gen_low_rank(HeadTask& t) {
  const double tau = t.params.get_double("temperature");
  const Index segments = t.params.get_int("segments");
  const double eta = t.params.get_double("noise");
  const Index rank = t.params.get_int("rank");
  const Index d = t.p.d;
  // Rank r: base vectors c·P·a with P (d×r) orthonormal shared by Q and K, a ~ N(0, I_r) and
  // c = (d/r)^(1/4), so that the logit <q, k>/√d = τ·<a, a'>/√r keeps standard deviation τ.
  RowMatrixD basis;
  double c = 1.0;
  if (rank > 0) {
    Rng rs = t.rng(kStreamShared);
    basis = random_orthonormal(rs, d, rank);
    c = std::pow(double(d) / double(rank), 0.25);
  }
  Eigen::VectorXd a(std::max<Index>(rank, 1)), base(d);
  auto draw = [&](Rng& rng, Eigen::Ref<Eigen::VectorXd> out) {
    if (rank > 0) {
      for (Index l = 0; l < rank; ++l) a(l) = gauss(rng);
      out = c * (basis * a.head(rank));
    } else {
      for (Index l = 0; l < d; ++l) out(l) = gauss(rng);
    }
  };
  auto fill = [&](Rng& rng, MatMap m, double scale) {
    const Index n = m.rows();
    RowMatrixD bases;
    if (segments > 0) {
      bases.resize(segments, d);
      for (Index s = 0; s < segments; ++s) {
        draw(rng, base);
        bases.row(s) = base.transpose();
      }
    }
    for (Index i = 0; i < n; ++i) {
      if (segments > 0) {
        base = bases.row(i * segments / n).transpose();
      } else {
        draw(rng, base);
      }
      for (Index l = 0; l < d; ++l) {
        const double noise = eta > 0 ? eta * gauss(rng) : 0.0;
        m(i, l) = float(scale * (base(l) + noise));
      }
    }
  };
  Rng rq = t.rng(kStreamQ);
  if (t.shared()) {
    fill(rq, t.q, std::sqrt(tau));
    t.k = t.q;
    return;
  }
  Rng rk = t.rng(kStreamK);
  fill(rq, t.q, tau);
  fill(rk, t.k, 1.0);
}

void gen_sink(HeadTask& t) {
  const double beta = t.params.get_double("beta");
  const double gamma = t.params.get_double("gamma");
  const Index d = t.p.d;
  Rng rs = t.rng(kStreamShared);
  Eigen::VectorXd u(d);
  for (Index l = 0; l < d; ++l) u(l) = gauss(rs);
  u /= u.norm();
  Rng rq = t.rng(kStreamQ), rk = t.rng(kStreamK);
  for (Index i = 0; i < t.q.rows(); ++i) {
    for (Index l = 0; l < d; ++l) t.q(i, l) = float(gauss(rq) + beta * u(l));
  }
  fill_normal(rk, t.k, 1.0);
  const double norm = gamma * std::sqrt(double(d));
  for (Index l = 0; l < d; ++l) t.k(0, l) = float(norm * u(l));
}

void gen_small_norm(HeadTask& t) {
  const double rho = t.params.get_double("rho");
  const Index d = t.p.d;
  // Every row has |x|²/√d = ρ exactly: x = sqrt(ρ√d)·g/|g|.
  const double radius = std::sqrt(rho * std::sqrt(double(d)));
  auto fill = [&](Rng& rng, MatMap m) {
    Eigen::VectorXd g(d);
    for (Index i = 0; i < m.rows(); ++i) {
      do {
        for (Index l = 0; l < d; ++l) g(l) = gauss(rng);
      } while (g.squaredNorm() == 0.0);
      g *= radius / g.norm();
      for (Index l = 0; l < d; ++l) m(i, l) = float(g(l));
    }
  };
  Rng rq = t.rng(kStreamQ);
  fill(rq, t.q);
  if (t.shared()) {
    t.k = t.q;
    return;
  }
  Rng rk = t.rng(kStreamK);
  fill(rk, t.k);
}

void gen_values(const std::string& kind, Rng& rng, ConstMatMap k, MatMap v) {
  const Index n = v.rows(), dv = v.cols(), d = k.cols();
  if (kind == "gaussian") {
    fill_normal(rng, v, 1.0);
    return;
  }
  RowMatrixD x(n, dv);
  if (kind == "random_walk") {
    for (Index c = 0; c < dv; ++c) x(0, c) = gauss(rng);
    for (Index j = 1; j < n; ++j) {
      for (Index c = 0; c < dv; ++c) x(j, c) = x(j - 1, c) + gauss(rng);
    }
  } else {  // key_linear
    RowMatrixD w(d, dv);
    for (Index l = 0; l < d; ++l) {
      for (Index c = 0; c < dv; ++c) w(l, c) = gauss(rng);
    }
    x = k.cast<double>() * w;
  }
  // Unit RMS per head, so that structured V is comparable with Gaussian V.
  const double rms = std::sqrt(x.squaredNorm() / double(x.size()));
  v = (rms > 0 ? x / rms : x).cast<float>();
}

// ---------------------------------------------------------------------------------------------
// The catalog

struct Entry {
  WorkloadInfo info;
  Generator generate = nullptr;
  bool shared_qk = false;  // offers shared_qk
};

std::string format_number(double x) {
  std::ostringstream os;
  os.precision(3);
  os << x;
  return os.str();
}

std::string stats_text(const std::vector<StatRange>& ranges, const std::string& note) {
  auto label = [](const std::string& s) -> std::string {
    if (s == "entropy_ratio") return "entropy/log n";
    if (s == "n_eff_ratio") return "n_eff/n";
    if (s == "max_weight") return "mean max weight";
    if (s == "sink_weight") return "mean weight on key 0";
    return s;
  };
  std::string text = "At n = " + std::to_string(kStatsN) + ", d = " + std::to_string(kStatsD) +
                     ", defaults, theory (documented range; harness/data/workload_theory.py): ";
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    const auto& r = ranges[i];
    text += (i ? "; " : "") + label(r.stat) + " " + format_number(r.theory) + " [" +
            format_number(r.lo) + ", " + format_number(r.hi) + "]";
  }
  return text + ". " + note;
}

ParamSpec shared_qk_spec() {
  return ParamSpec::boolean("shared_qk", false,
                            "K = Q exactly (shared-QK attention as in Reformer's LSH); needs "
                            "n_q = n_k");
}

ParamSpec values_spec() {
  return ParamSpec::choice("values", "gaussian", {"gaussian", "random_walk", "key_linear"},
                           "V: N(0, I); a random walk along the sequence (smooth V); or K·W "
                           "with Gaussian W (V correlated with K). Structured V is rescaled to "
                           "unit RMS per head");
}

std::vector<Entry> make_catalog() {
  std::vector<Entry> c;
  {
    std::vector<StatRange> r = {{"entropy_ratio", 0.928, 0.91, 0.945},
                                {"n_eff_ratio", 0.383, 0.34, 0.43},
                                {"max_weight", 0.0164, 0.011, 0.024}};
    c.push_back(
        {{"gaussian",
          "Q = τ·G₁, K = G₂, V = G₃ with G Gaussian: logits N(0, τ²). At τ = 1 attention is "
          "nearly uniform (weights log-normal, n_eff ≈ n/e), the regime in which low-rank and "
          "kernel methods look good and sparse/LSH methods look bad; larger τ sharpens it.",
          {ParamSpec::real("temperature", 1.0, 0.0, 1e3,
                           "τ, the logit standard deviation: Q = τ·G₁, K = G₂ (with shared_qk, "
                           "Q = K = √τ·G, so off-diagonal logits keep standard deviation τ)"),
           shared_qk_spec(), values_spec()},
          stats_text(r,
                     "Theory: n_eff/n = E[exp(-τ²|g|²/d)] → e^-τ², entropy ≈ log n − τ²/2. "
                     "Finite-n theory for τ = 2, 4, 8: n_eff/n 0.057, 0.0066, 0.0022; mean max "
                     "weight 0.107, 0.42, 0.71."),
          r,
          ""},
         gen_gaussian,
         true});
  }
  {
    std::vector<StatRange> r = {{"entropy_ratio", 0.573, 0.54, 0.61},
                                {"n_eff_ratio", 0.0442, 0.036, 0.053},
                                {"max_weight", 0.0559, 0.045, 0.07}};
    c.push_back(
        {{"clustered",
          "C centres μ_c ~ N(0, I) shared by queries and keys; k_j = a·μ_c(j) + σ·ε and q_i = "
          "a·μ_c'(i) + σ·ε with uniformly random labels. A query attends almost only to the "
          "keys of its own cluster (same-cluster logits ≈ a²√d, others ~ N(0, a⁴)). Favours "
          "LSH and Routing (with shared_qk for LSH), hurts Performer.",
          {ParamSpec::integer("clusters", 16, 1, 1e6, "C, the number of centres"),
           ParamSpec::real("scale", 2.0, 0.0, 1e3, "a, the centre scale"),
           ParamSpec::real("sigma", 0.3, 0.0, 1e3, "σ, the within-cluster noise"), shared_qk_spec(),
           values_spec()},
          stats_text(r,
                     "Theory: within the query's cluster (n/C keys) logits vary with variance "
                     "v = σ²(a² + σ²), so n_eff/n ≈ e^-v / C and entropy ≈ log(n/C) − v/2; "
                     "needs a²√d well above a²·√(2 log C), i.e. d ≥ 32."),
          r,
          ""},
         gen_clustered,
         true});
  }
  {
    std::vector<StatRange> r = {{"entropy_ratio", 0.595, 0.565, 0.625},
                                {"n_eff_ratio", 0.0117, 0.0105, 0.013},
                                {"max_weight", 0.236, 0.22, 0.25},
                                {"mean_distance", 48.1, 44.0, 52.0}};
    c.push_back(
        {{"local_decay",
          "Sinusoidal positional features q_i, k_j = c·[cos(ω_f·pos + φ_f), sin(ω_f·pos + "
          "φ_f)]_f, f = 1..F = d/2, with ω_f geometric between 2π/(4 n_k) and 2π/4, random "
          "phases φ_f per head, and c² = α√d/F, so that the logit is exactly (α/F)·Σ_f cos(ω_f "
          "(i − j)): it peaks at i = j and decays with distance; α sets the sharpness. For n_q "
          "≠ n_k query i sits at position i + n_k − n_q (bottom-right). Favours window, "
          "BigBird and H-attention. Needs d ≥ 2.",
          {ParamSpec::real("alpha", 8.0, 0.0, 1e4, "α, the logit at distance 0 (sharpness)"),
           shared_qk_spec(), values_spec()},
          stats_text(r,
                     "mean_distance is the mean over rows of Σ_j p_ij·|i − j| (tokens). Theory "
                     "= the kernel's softmax evaluated in double; α = 1, 2, 4, 16: n_eff/n "
                     "0.966, 0.838, 0.314, 0.0020."),
          r,
          ""},
         gen_local_decay,
         true});
  }
  {
    std::vector<StatRange> r = {{"entropy_ratio", 0.940, 0.915, 0.96},
                                {"n_eff_ratio", 0.519, 0.44, 0.60},
                                {"max_weight", 0.00386, 0.0031, 0.0047}};
    c.push_back(
        {{"low_rank",
          "Coarsenable inputs: Q and K piecewise constant on `segments` equal segments "
          "(segment of row i = floor(i·S/n)), each segment a Gaussian vector, plus optional "
          "noise η·ε per token; and/or low logit rank r (base vectors in a random r-dim "
          "subspace shared by Q and K). Q = τ·(base + η·ε), K = base' + η·ε'. At η = 0 this "
          "is exact for Nyström, pooled Linformer and H-attention (power-of-two S), and their "
          "error should grow smoothly with η; small τ with rank r favours Nyström, Linformer "
          "and Performer.",
          {ParamSpec::real("temperature", 1.0, 0.0, 1e3,
                           "τ, the logit standard deviation (with shared_qk, Q = K = √τ·(base + "
                           "η·ε))"),
           ParamSpec::integer("segments", 16, 0, 1e9,
                              "S, the number of constant segments (<= n_q and n_k); 0 = every "
                              "token its own draw"),
           ParamSpec::real("noise", 0.0, 0.0, 1e3, "η, per-token Gaussian noise added to Q and K"),
           ParamSpec::integer("rank", 0, 0, 1e6,
                              "r, the rank of the base vectors' subspace (<= d); 0 = d (full)"),
           shared_qk_spec(), values_spec()},
          stats_text(r,
                     "Theory: a query row sees S key segments with logits N(0, τ²), each "
                     "repeated n/S times, so n_eff/n = E[(Σ e^s)² / (S Σ e^2s)] and "
                     "entropy = log(n/S) + H(softmax(s)), evaluated over S = 16 draws; rows of "
                     "one segment share their statistics, so the measured mean varies more "
                     "than for gaussian."),
          r,
          ""},
         gen_low_rank,
         true});
  }
  {
    std::vector<StatRange> r = {{"entropy_ratio", 0.163, 0.13, 0.20},
                                {"n_eff_ratio", 0.0145, 0.011, 0.019},
                                {"max_weight", 0.851, 0.81, 0.89},
                                {"sink_weight", 0.851, 0.81, 0.89}};
    c.push_back(
        {{"sink",
          "Attention sink: Gaussian q_i and k_j plus a shared unit direction u per head: q_i "
          "+= β·u and key 0 replaced by k_0 = γ·√d·u (§8's γ = 4√d is γ = 4 here). Most "
          "weight goes to key 0. Window methods without global tokens miss it; BigBird (first "
          "block global) and Longformer with global token 0 capture it; LSH only if the hash "
          "collides. No shared_qk: shared-QK attention normalises keys, which erases the "
          "sink's norm.",
          {ParamSpec::real("beta", 3.0, 0.0, 1e3, "β, the query component along u"),
           ParamSpec::real("gamma", 4.0, 0.0, 1e3, "γ, the sink key's norm in units of √d"),
           values_spec()},
          stats_text(r,
                     "Theory: the sink logit is γ(β + z), z ~ N(0, 1), against n − 1 logits "
                     "N(0, 1 + β²/d), so p_i0 ≈ 1/(1 + (n − 1)·e^{(1+β²/d)/2 − γ(β+z)}), "
                     "whose mean is 0.85 (§8 measured 0.85, n_eff/n 0.015)."),
          r,
          ""},
         gen_sink,
         false});
  }
  {
    std::vector<StatRange> r = {{"entropy_ratio", 0.99887, 0.998, 0.9995},
                                {"n_eff_ratio", 0.9845, 0.978, 0.99},
                                {"max_weight", 0.00145, 0.0012, 0.0018}};
    c.push_back(
        {{"small_norm",
          "Small-norm regime for kernel methods: every q_i and k_j has |x|²/√d = ρ exactly "
          "(random direction), as typical after LayerNorm and small projections; logits are "
          "ρ·cos θ with cos θ ~ N(0, 1/d), so attention is nearly uniform. Needed to see "
          "Performer's m^-1/2 error decay (§6.2).",
          {ParamSpec::real("rho", 1.0, 0.0, 1e3, "ρ = |q|²/√d = |k|²/√d for every row"),
           shared_qk_spec(), values_spec()},
          stats_text(r, "Theory: logits N(0, ρ²/d): n_eff/n ≈ e^-ρ²/d, entropy ≈ log n − ρ²/(2d)."),
          r,
          ""},
         gen_small_norm,
         true});
  }
  c.push_back({{"files",
                "Q, K and V read from tensor files (.npy or .safetensors, float32 or float64, "
                "shapes (n, d), (heads, n, d) or (batch, heads, n, d)): a user's own model's "
                "inputs. The seed is ignored.",
                {},
                "Whatever the files hold; the harness records the exact-attention statistics "
                "of every run.",
                {},
                R"(JSON object {"q": PATH, "k": PATH, "v": PATH}, all required; a PATH is a )"
                R"(.npy file, a .safetensors file holding one tensor, or "file.safetensors:name". )"
                R"(Q is [batch, heads, n_q, d], K [batch, heads, n_k, d], V [batch, heads, n_k, )"
                R"(d_v] (missing leading dimensions are 1).)"},
               nullptr,
               false});
  return c;
}

const std::vector<Entry>& entries() {
  static const std::vector<Entry> catalog = make_catalog();
  return catalog;
}

const Entry& entry(const std::string& name) {
  std::string names;
  for (const auto& e : entries()) {
    if (e.info.name == name) return e;
    names += (names.empty() ? "" : ", ") + e.info.name;
  }
  throw std::invalid_argument("unknown workload '" + name + "'; workloads: " + names);
}

void check_tensor(const std::string& role, const std::string& path, const LoadedTensor& t,
                  Index batch, Index heads, Index rows, Index cols, const Problem& p) {
  const Tensor4& x = t.tensor;
  if (x.batch() != batch || x.heads() != heads || x.rows() != rows || x.cols() != cols) {
    throw std::invalid_argument("workload 'files': " + role + " file '" + path + "' is " +
                                x.shape_string() + " as [batch, heads, n, d], expected [" +
                                std::to_string(batch) + ", " + std::to_string(heads) + ", " +
                                std::to_string(rows) + ", " + std::to_string(cols) +
                                "] for problem " + p.to_string());
  }
}

AttentionInputs load_files(const ParamSet& params, const Problem& p) {
  const std::string qp = params.get_string("q"), kp = params.get_string("k"),
                    vp = params.get_string("v");
  LoadedTensor q = read_tensor_file(qp);
  check_tensor("q", qp, q, p.batch, p.heads, p.n_q, p.d, p);
  LoadedTensor k = read_tensor_file(kp);
  check_tensor("k", kp, k, p.batch, p.heads, p.n_k, p.d, p);
  LoadedTensor v = read_tensor_file(vp);
  check_tensor("v", vp, v, p.batch, p.heads, p.n_k, p.d_v, p);
  return {std::move(q.tensor), std::move(k.tensor), std::move(v.tensor), KeyMask()};
}

}  // namespace

const std::vector<WorkloadInfo>& workload_catalog() {
  static const std::vector<WorkloadInfo> catalog = [] {
    std::vector<WorkloadInfo> out;
    for (const auto& e : entries()) out.push_back(e.info);
    return out;
  }();
  return catalog;
}

const WorkloadInfo& workload_info(const std::string& name) {
  const Entry& e = entry(name);
  for (const auto& w : workload_catalog()) {
    if (w.name == e.info.name) return w;
  }
  throw std::logic_error("workload catalog out of sync");
}

Json describe_workload(const WorkloadInfo& info) {
  Json params = Json::array();
  for (const auto& p : info.params) params.push_back(p.describe());
  Json ranges = Json::array();
  for (const auto& r : info.stat_ranges) {
    ranges.push_back({{"stat", r.stat}, {"theory", r.theory}, {"lo", r.lo}, {"hi", r.hi}});
  }
  Json j = {{"name", info.name},
            {"summary", info.summary},
            {"params", params},
            {"expected_stats", info.expected_stats},
            {"stat_ranges", ranges}};
  if (!info.params_doc.empty()) j["params_doc"] = info.params_doc;
  return j;
}

ParamSet resolve_workload_params(const std::string& name, const Json& params) {
  const Entry& e = entry(name);
  const std::string who = "workload '" + name + "'";
  if (name != "files") return resolve_params(who, e.info.params, params);
  if (!params.is_object()) {
    throw std::invalid_argument(who + ": parameters must be a JSON object " +
                                R"({"q": PATH, "k": PATH, "v": PATH}, got )" + params.dump());
  }
  for (const auto& [key, value] : params.items()) {
    if (key != "q" && key != "k" && key != "v") {
      throw std::invalid_argument(who + ": unknown parameter '" + key +
                                  "'; valid parameters: q, k, v");
    }
  }
  for (const char* key : {"q", "k", "v"}) {
    if (!params.contains(key)) {
      throw std::invalid_argument(who + ": parameter '" + key + "' is missing, expected a path");
    }
    if (!params.at(key).is_string() || params.at(key).get<std::string>().empty()) {
      throw std::invalid_argument(who + ": parameter '" + key + "' = " + params.at(key).dump() +
                                  ", expected a file path string");
    }
  }
  return ParamSet(who, params);
}

AttentionInputs generate_workload(const std::string& name, const ParamSet& params, const Problem& p,
                                  std::uint64_t seed) {
  const Entry& e = entry(name);
  p.validate();
  if (!e.generate) return load_files(params, p);
  if (e.shared_qk && params.get_bool("shared_qk") && p.n_q != p.n_k) {
    reject(name, "shared_qk", true, "n_q = n_k (K = Q)", p);
  }
  if (name == "local_decay" && p.d < 2) {
    throw std::invalid_argument("workload 'local_decay': d = " + std::to_string(p.d) +
                                ", expected d >= 2 (one cos/sin pair per frequency)");
  }
  if (name == "low_rank") {
    const Index rank = params.get_int("rank"), segments = params.get_int("segments");
    if (rank > p.d) reject(name, "rank", rank, "at most d = " + std::to_string(p.d), p);
    if (segments > std::min(p.n_q, p.n_k)) {
      reject(name, "segments", segments,
             "at most min(n_q, n_k) = " + std::to_string(std::min(p.n_q, p.n_k)), p);
    }
  }
  AttentionInputs in{Tensor4(p.batch, p.heads, p.n_q, p.d), Tensor4(p.batch, p.heads, p.n_k, p.d),
                     Tensor4(p.batch, p.heads, p.n_k, p.d_v), KeyMask()};
  const std::string values = params.get_string("values");
  attnbench::parallel_for(Index(0), p.batch * p.heads, [&](Index bh) {
    const Index b = bh / p.heads, h = bh % p.heads;
    HeadTask task{params,
                  p,
                  seed,
                  b,
                  h,
                  MatMap(in.q.head_data(b, h), p.n_q, p.d),
                  MatMap(in.k.head_data(b, h), p.n_k, p.d)};
    e.generate(task);
    Rng rv = head_rng(seed, kStreamV, b, h);
    gen_values(values, rv, ConstMatMap(in.k.head_data(b, h), p.n_k, p.d),
               MatMap(in.v.head_data(b, h), p.n_k, p.d_v));
  });
  return in;
}

Problem files_problem(const ParamSet& params) {
  const std::string qp = params.get_string("q"), kp = params.get_string("k"),
                    vp = params.get_string("v");
  const TensorFileInfo q = inspect_tensor_file(qp), k = inspect_tensor_file(kp),
                       v = inspect_tensor_file(vp);
  auto dims = [](const TensorFileInfo& t) {
    return "[" + std::to_string(t.batch) + ", " + std::to_string(t.heads) + ", " +
           std::to_string(t.rows) + ", " + std::to_string(t.cols) + "]";
  };
  auto mismatch = [&](const std::string& what) {
    throw std::runtime_error("workload 'files': " + what + ": q '" + qp + "' is " + dims(q) +
                             ", k '" + kp + "' is " + dims(k) + ", v '" + vp + "' is " + dims(v) +
                             " as [batch, heads, n, d]");
  };
  if (q.batch != k.batch || k.batch != v.batch) mismatch("batch sizes differ");
  if (q.heads != k.heads || k.heads != v.heads) mismatch("head counts differ");
  if (q.cols != k.cols) mismatch("q and k have different d");
  if (k.rows != v.rows) mismatch("k and v have different n");
  Problem p;
  p.batch = q.batch;
  p.heads = q.heads;
  p.n_q = q.rows;
  p.n_k = k.rows;
  p.d = q.cols;
  p.d_v = v.cols;
  return p;
}

}  // namespace attnbench
