// Variant parameters: declared specs with defaults, ranges and meanings; values from JSON or a
// compact string ("flash:block_q=64,block_k=128"); strict validation.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attention/tensor.h"

namespace attnbench {

using Json = nlohmann::json;

enum class ParamType { Int, Float, Bool, Choice, IntList };

const char* to_string(ParamType type);

// One declared parameter. A null default means "auto": the variant derives the value from the
// problem shape, and auto_rule says how (resolved_params() reports the value used).
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::Int;
  Json default_value;  // null = auto
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  std::vector<std::string> choices;  // for Choice
  std::string doc;
  std::string auto_rule;  // for a null default

  static ParamSpec integer(std::string name, Json def, double min, double max, std::string doc,
                           std::string auto_rule = {});
  static ParamSpec real(std::string name, Json def, double min, double max, std::string doc,
                        std::string auto_rule = {});
  static ParamSpec boolean(std::string name, bool def, std::string doc);
  static ParamSpec choice(std::string name, std::string def, std::vector<std::string> choices,
                          std::string doc);
  static ParamSpec int_list(std::string name, Json def, double min, double max, std::string doc);

  std::string range_string() const;
  Json describe() const;  // for `attnbench list --json`
};

// Validated parameter values of one variant: every declared key is present (null = auto).
class ParamSet {
 public:
  ParamSet() = default;
  ParamSet(std::string variant, Json values)
      : variant_(std::move(variant)), values_(std::move(values)) {}

  const std::string& variant() const { return variant_; }
  const Json& json() const { return values_; }
  bool is_auto(const std::string& key) const;

  std::int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<Index> get_int_list(const std::string& key) const;

  // Fill an auto parameter with the value derived from the shape.
  void set(const std::string& key, Json value) { values_[key] = std::move(value); }

 private:
  const Json& at(const std::string& key) const;
  std::string variant_;
  Json values_ = Json::object();
};

// Check `given` (a JSON object) against the specs: unknown keys are rejected with the list of
// valid keys; types and ranges are checked; missing keys take their defaults.
// Throws std::invalid_argument naming the variant, the parameter and the value.
ParamSet resolve_params(const std::string& variant, const std::vector<ParamSpec>& specs,
                        const Json& given);

// "name" or "name:key=value,key=value". Values are read as JSON literals where they parse
// (numbers, true/false, [lists]) and as strings otherwise, so "mode=merged" and
// "global=[0,17,42]" both work.
struct VariantSpec {
  std::string name;
  Json params = Json::object();
  std::string to_string() const;
};
VariantSpec parse_variant_spec(const std::string& text);

}  // namespace attnbench
