// Standard normal draws by the ziggurat method, for the workload generators.
// Time O(1) per draw (about 98.8% of draws take one 64-bit word, a multiply and a compare);
// memory 4 KiB of tables. Marsaglia & Tsang, "The Ziggurat Method for Generating Random
// Variables", J. Stat. Software 5(8), 2000 (256 layers); tail by Marsaglia 1964.
//
// Why not Rng::normal(): Box–Muller costs a log, a sqrt and a sine/cosine per pair (about 22 ns
// of CPU per draw here, against about 8 ns for this), and the normal draws dominate the time to
// generate a long input. This is as reproducible: it depends only on the Rng stream and on
// exp/log in the rare wedge and tail cases.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "attention/random.h"

namespace attnbench {

class Ziggurat {
 public:
  static constexpr int kLayers = 256;
  static constexpr double kR = 3.6541528853610088;  // start of the tail
  static constexpr double kV = 0.00492867323399;    // area of each layer

  // One N(0, 1) draw from `rng`.
  static double normal(Rng& rng) {
    const Tables& t = tables();
    for (;;) {
      const std::uint64_t bits = rng.next();
      const unsigned i = unsigned(bits & 0xff);
      const bool negative = (bits >> 8) & 1;
      const double x = double(bits >> 11) * 0x1.0p-53 * t.x[i];
      if (x < t.x[i + 1]) return negative ? -x : x;  // inside the layer's core rectangle
      if (i == 0) {
        // Beyond R: x = R + a with a ~ Exp(R), accepted with probability exp(-a²/2).
        double a, b;
        do {
          a = -std::log(1.0 - rng.uniform()) / kR;
          b = -std::log(1.0 - rng.uniform());
        } while (b + b < a * a);
        return negative ? -(kR + a) : kR + a;
      }
      // In the wedge between the core rectangle and the curve: accept under the density.
      if (t.f[i] + rng.uniform() * (t.f[i + 1] - t.f[i]) < std::exp(-0.5 * x * x)) {
        return negative ? -x : x;
      }
    }
  }

 private:
  struct Tables {
    std::array<double, kLayers + 1> x;  // layer edges, x[0] = V/f(R) (base strip), x[256] = 0
    std::array<double, kLayers + 1> f;  // f(x[i]) = exp(-x[i]²/2)
  };
  static const Tables& tables() {
    static const Tables t = [] {
      Tables t{};
      const auto density = [](double x) { return std::exp(-0.5 * x * x); };
      t.x[0] = kV / density(kR);
      t.x[1] = kR;
      for (int i = 1; i < kLayers - 1; ++i) {
        t.x[i + 1] = std::sqrt(-2.0 * std::log(kV / t.x[i] + density(t.x[i])));
      }
      t.x[kLayers] = 0.0;
      for (int i = 0; i <= kLayers; ++i) t.f[i] = density(t.x[i]);
      return t;
    }();
    return t;
  }
};

}  // namespace attnbench
