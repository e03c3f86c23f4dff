#include "attention/params.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace attnbench {

const char* to_string(ParamType type) {
  switch (type) {
    case ParamType::Int:
      return "int";
    case ParamType::Float:
      return "float";
    case ParamType::Bool:
      return "bool";
    case ParamType::Choice:
      return "choice";
    case ParamType::IntList:
      return "int list";
  }
  return "?";
}

ParamSpec ParamSpec::integer(std::string name, Json def, double min, double max, std::string doc,
                             std::string auto_rule) {
  return ParamSpec{std::move(name), ParamType::Int,      std::move(def), min, max, {},
                   std::move(doc),  std::move(auto_rule)};
}
ParamSpec ParamSpec::real(std::string name, Json def, double min, double max, std::string doc,
                          std::string auto_rule) {
  return ParamSpec{std::move(name), ParamType::Float,    std::move(def), min, max, {},
                   std::move(doc),  std::move(auto_rule)};
}
ParamSpec ParamSpec::boolean(std::string name, bool def, std::string doc) {
  return ParamSpec{std::move(name), ParamType::Bool, Json(def), 0, 1, {}, std::move(doc), {}};
}
ParamSpec ParamSpec::choice(std::string name, std::string def, std::vector<std::string> choices,
                            std::string doc) {
  return ParamSpec{std::move(name),
                   ParamType::Choice,
                   Json(std::move(def)),
                   0,
                   0,
                   std::move(choices),
                   std::move(doc),
                   {}};
}
ParamSpec ParamSpec::int_list(std::string name, Json def, double min, double max, std::string doc) {
  return ParamSpec{
      std::move(name), ParamType::IntList, std::move(def), min, max, {}, std::move(doc), {}};
}

namespace {

std::string number_string(double x) {
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  // Integral bounds print in full (2^40 as 1099511627776, not 1.09951e+12).
  if (x == std::floor(x) && std::fabs(x) < 9.0e15) return std::to_string(std::int64_t(x));
  std::ostringstream os;
  os << x;
  return os.str();
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

[[noreturn]] void fail(const std::string& variant, const std::string& key, const Json& value,
                       const std::string& expected) {
  throw std::invalid_argument(variant + ": parameter '" + key + "' = " + value.dump() +
                              ", expected " + expected);
}

bool is_integral(const Json& v) {
  if (v.is_number_integer()) return true;
  if (v.is_number_float()) {
    const double x = v.get<double>();
    return std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9.0e15;
  }
  return false;
}

void check_range(const std::string& variant, const ParamSpec& spec, const Json& shown, double x) {
  if (!(x >= spec.min && x <= spec.max)) fail(variant, spec.name, shown, spec.range_string());
}

Json validate_value(const std::string& variant, const ParamSpec& spec, const Json& v) {
  switch (spec.type) {
    case ParamType::Int: {
      if (!is_integral(v)) fail(variant, spec.name, v, "an integer in " + spec.range_string());
      const auto x = static_cast<std::int64_t>(v.get<double>());
      check_range(variant, spec, v, double(x));
      return Json(x);
    }
    case ParamType::Float: {
      if (!v.is_number()) fail(variant, spec.name, v, "a number in " + spec.range_string());
      const double x = v.get<double>();
      if (!std::isfinite(x)) fail(variant, spec.name, v, "a finite number");
      check_range(variant, spec, v, x);
      return Json(x);
    }
    case ParamType::Bool: {
      if (v.is_boolean()) return v;
      if (v.is_number_integer() && (v.get<int>() == 0 || v.get<int>() == 1)) {
        return Json(v.get<int>() == 1);
      }
      fail(variant, spec.name, v, "true or false");
    }
    case ParamType::Choice: {
      if (v.is_string()) {
        for (const auto& c : spec.choices) {
          if (c == v.get<std::string>()) return v;
        }
      }
      fail(variant, spec.name, v, "one of " + join(spec.choices, " | "));
    }
    case ParamType::IntList: {
      Json list = v.is_array() ? v : Json::array({v});
      Json out = Json::array();
      for (const auto& item : list) {
        if (!is_integral(item)) fail(variant, spec.name, v, "a list of integers");
        const auto x = static_cast<std::int64_t>(item.get<double>());
        check_range(variant, spec, v, double(x));
        out.push_back(x);
      }
      return out;
    }
  }
  return v;
}

}  // namespace

std::string ParamSpec::range_string() const {
  switch (type) {
    case ParamType::Bool:
      return "true | false";
    case ParamType::Choice:
      return join(choices, " | ");
    default:
      return "[" + number_string(min) + ", " + number_string(max) + "]";
  }
}

Json ParamSpec::describe() const {
  Json j = {{"name", name},
            {"type", to_string(type)},
            {"default", default_value},
            {"doc", doc},
            {"range", range_string()}};
  if (type == ParamType::Int || type == ParamType::Float || type == ParamType::IntList) {
    j["min"] = std::isinf(min) ? Json() : Json(min);
    j["max"] = std::isinf(max) ? Json() : Json(max);
  }
  if (type == ParamType::Choice) j["choices"] = choices;
  if (default_value.is_null()) j["auto"] = auto_rule;
  return j;
}

ParamSet resolve_params(const std::string& variant, const std::vector<ParamSpec>& specs,
                        const Json& given) {
  if (!given.is_null() && !given.is_object()) {
    throw std::invalid_argument(variant + ": parameters must be a JSON object, got " +
                                given.dump());
  }
  std::vector<std::string> names;
  for (const auto& s : specs) names.push_back(s.name);
  if (given.is_object()) {
    for (const auto& [key, value] : given.items()) {
      bool known = false;
      for (const auto& s : specs) known = known || s.name == key;
      if (!known) {
        throw std::invalid_argument(
            variant + ": unknown parameter '" + key +
            "'; valid parameters: " + (names.empty() ? std::string("(none)") : join(names, ", ")));
      }
    }
  }
  Json values = Json::object();
  for (const auto& s : specs) {
    if (given.is_object() && given.contains(s.name) && !given.at(s.name).is_null()) {
      values[s.name] = validate_value(variant, s, given.at(s.name));
    } else {
      values[s.name] = s.default_value;  // null = auto, filled by the variant
    }
  }
  return ParamSet(variant, std::move(values));
}

const Json& ParamSet::at(const std::string& key) const {
  if (!values_.contains(key)) {
    throw std::logic_error(variant_ + ": parameter '" + key + "' is not declared");
  }
  return values_.at(key);
}

bool ParamSet::is_auto(const std::string& key) const { return at(key).is_null(); }

std::int64_t ParamSet::get_int(const std::string& key) const {
  const Json& v = at(key);
  if (v.is_null()) throw std::logic_error(variant_ + ": auto parameter '" + key + "' unresolved");
  return v.get<std::int64_t>();
}
double ParamSet::get_double(const std::string& key) const {
  const Json& v = at(key);
  if (v.is_null()) throw std::logic_error(variant_ + ": auto parameter '" + key + "' unresolved");
  return v.get<double>();
}
bool ParamSet::get_bool(const std::string& key) const { return at(key).get<bool>(); }
std::string ParamSet::get_string(const std::string& key) const {
  return at(key).get<std::string>();
}
std::vector<Index> ParamSet::get_int_list(const std::string& key) const {
  std::vector<Index> out;
  for (const auto& x : at(key)) out.push_back(x.get<Index>());
  return out;
}

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

}  // namespace

VariantSpec parse_variant_spec(const std::string& text) {
  VariantSpec spec;
  const auto colon = text.find(':');
  spec.name = trim(text.substr(0, colon));
  if (spec.name.empty()) {
    throw std::invalid_argument("variant spec '" + text +
                                "': expected NAME or NAME:key=value,key=value");
  }
  if (colon == std::string::npos) return spec;
  const std::string rest = text.substr(colon + 1);
  // Split on commas outside brackets so that list values keep their commas.
  std::vector<std::string> items;
  int depth = 0;
  std::string cur;
  for (char c : rest) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) {
      items.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  items.push_back(cur);
  for (const auto& raw : items) {
    const std::string item = trim(raw);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw std::invalid_argument("variant spec '" + text + "': item '" + item +
                                  "' is not key=value");
    }
    const std::string key = trim(item.substr(0, eq));
    const std::string value = trim(item.substr(eq + 1));
    Json parsed = Json::parse(value, nullptr, /*allow_exceptions=*/false);
    spec.params[key] = parsed.is_discarded() ? Json(value) : parsed;
  }
  return spec;
}

std::string VariantSpec::to_string() const {
  if (params.empty()) return name;
  std::string out = name + ":";
  bool first = true;
  for (const auto& [key, value] : params.items()) {
    if (!first) out += ",";
    first = false;
    out += key + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out;
}

}  // namespace attnbench
