// The self-registering variant registry.
//
// A variant file ends with
//
//   ATTNBENCH_REGISTER_VARIANT(flash) {
//     VariantInfo info;
//     info.summary = "...";
//     ...
//     info.make = make_factory<FlashAttention>();
//     return info;
//   }
//
// which registers the variant under the name `flash` (by convention the file stem) when the
// program starts. Variants are compiled into an OBJECT library, so the linker keeps every
// registration (a static library would let it drop them: google/benchmark issue #1498), and
// tests/registry_test.cpp lists every expected name so a dropped registration fails loudly.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.h"
#include "attention/params.h"
#include "attention/problem.h"

namespace attnbench {

// Which exact attention a variant approximates; the harness measures error against it.
enum class ReferenceKind {
  kSoftmax,          // softmax(scale * Q K^T) V
  kSharedQkSoftmax,  // Reformer: keys = normalised queries, self excluded unless alone
};
const char* to_string(ReferenceKind kind);

struct VariantTraits {
  std::string family;           // exact | sparse | lsh | hierarchical | approximate | test
  bool exact = false;           // equals exact attention up to float rounding
  bool causal = true;           // supports causal masking
  bool non_causal = true;       // supports non-causal use (false: the pattern is causal only)
  bool key_padding = true;      // honours a key-padding mask
  bool deterministic = true;    // same seed -> bitwise same output, any thread count
  bool randomized = false;      // draws randomness from `seed` (report mean over seeds)
  bool rows_sum_to_one = true;  // each row's effective weights sum to 1 (V = ones gives ones)
  ReferenceKind reference = ReferenceKind::kSoftmax;
  std::string time_complexity;    // e.g. "O(n^2 d)", for reports
  std::string memory_complexity;  // extra memory beyond inputs and outputs
  // Hidden variants (test doubles) are left out of listings and `all` selections.
  bool hidden = false;
};

// Analytic cost of one forward over the whole problem.
struct Cost {
  double flops = 0;         // floating-point operations (a multiply-add counts 2)
  double memory_bytes = 0;  // peak extra memory beyond inputs and outputs, setup included
};

using Factory = std::function<std::unique_ptr<Attention>(const Problem&, const ParamSet&)>;
// `threads` is the thread count the forward will run with (scratch is often per thread).
using CostModel = std::function<Cost(const Problem&, const ParamSet&, int threads)>;

struct VariantInfo {
  std::string name;     // filled from the registration macro
  std::string summary;  // one line
  std::string paper;    // citation
  VariantTraits traits;
  std::vector<ParamSpec> params;
  Factory make;
  CostModel cost;

  Json describe() const;  // for `attnbench list --json`
};

template <typename T>
Factory make_factory() {
  return [](const Problem& problem, const ParamSet& params) -> std::unique_ptr<Attention> {
    return std::make_unique<T>(problem, params);
  };
}

class Registry {
 public:
  static Registry& instance();
  void add(VariantInfo info);
  const VariantInfo* find(const std::string& name) const;
  // Throws std::invalid_argument listing the registered names.
  const VariantInfo& get(const std::string& name) const;
  // Sorted names; hidden variants only when asked.
  std::vector<std::string> names(bool include_hidden = false) const;

 private:
  std::vector<VariantInfo> variants_;
};

struct Registrar {
  Registrar(const char* name, VariantInfo (*describe)());
};

// Resolve a variant's parameters (defaults, validation) without constructing it.
ParamSet resolve_variant_params(const std::string& name, const Json& params);

// Construct a variant: checks the problem against the traits (causal, key padding), resolves the
// parameters and calls the factory. Throws std::invalid_argument with a clear message.
std::unique_ptr<Attention> make_attention(const std::string& name, const Problem& problem,
                                          const Json& params = Json::object());
std::unique_ptr<Attention> make_attention(const VariantSpec& spec, const Problem& problem);

}  // namespace attnbench

#define ATTNBENCH_REGISTER_VARIANT(NAME)                                                     \
  static ::attnbench::VariantInfo attnbench_describe_##NAME();                               \
  static const ::attnbench::Registrar attnbench_registrar_##NAME(#NAME,                      \
                                                                 attnbench_describe_##NAME); \
  static ::attnbench::VariantInfo attnbench_describe_##NAME()
