#include "attention/registry.h"

#include <algorithm>
#include <stdexcept>

namespace attnbench {

const char* to_string(ReferenceKind kind) {
  switch (kind) {
    case ReferenceKind::kSoftmax:
      return "softmax";
    case ReferenceKind::kSharedQkSoftmax:
      return "shared_qk_softmax";
  }
  return "?";
}

Json VariantInfo::describe() const {
  Json params_json = Json::array();
  for (const auto& p : params) params_json.push_back(p.describe());
  return {{"name", name},
          {"summary", summary},
          {"paper", paper},
          {"family", traits.family},
          {"exact", traits.exact},
          {"causal", traits.causal},
          {"non_causal", traits.non_causal},
          {"key_padding", traits.key_padding},
          {"deterministic", traits.deterministic},
          {"randomized", traits.randomized},
          {"rows_sum_to_one", traits.rows_sum_to_one},
          {"reference", to_string(traits.reference)},
          {"time_complexity", traits.time_complexity},
          {"memory_complexity", traits.memory_complexity},
          {"params", params_json}};
}

Registry& Registry::instance() {
  static Registry registry;  // function-local: safe from static initialisation order
  return registry;
}

void Registry::add(VariantInfo info) {
  if (find(info.name) != nullptr) {
    throw std::logic_error("attnbench registry: variant '" + info.name + "' registered twice");
  }
  if (!info.make) {
    throw std::logic_error("attnbench registry: variant '" + info.name + "' has no factory");
  }
  variants_.push_back(std::move(info));
}

const VariantInfo* Registry::find(const std::string& name) const {
  for (const auto& v : variants_) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

const VariantInfo& Registry::get(const std::string& name) const {
  if (const VariantInfo* v = find(name)) return *v;
  std::string known;
  for (const auto& n : names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown variant '" + name + "'; registered variants: " + known);
}

std::vector<std::string> Registry::names(bool include_hidden) const {
  std::vector<std::string> out;
  for (const auto& v : variants_) {
    if (include_hidden || !v.traits.hidden) out.push_back(v.name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Registrar::Registrar(const char* name, VariantInfo (*describe)()) {
  VariantInfo info = describe();
  info.name = name;
  Registry::instance().add(std::move(info));
}

ParamSet resolve_variant_params(const std::string& name, const Json& params) {
  const VariantInfo& info = Registry::instance().get(name);
  return resolve_params(name, info.params, params);
}

std::unique_ptr<Attention> make_attention(const std::string& name, const Problem& problem,
                                          const Json& params) {
  const VariantInfo& info = Registry::instance().get(name);
  problem.validate();
  if (problem.causal && !info.traits.causal) {
    throw std::invalid_argument(name + ": causal masking is not supported by this variant (" +
                                problem.to_string() + ")");
  }
  if (!problem.causal && !info.traits.non_causal) {
    throw std::invalid_argument(name + ": this pattern is causal only; set causal = true (" +
                                problem.to_string() + ")");
  }
  if (problem.key_padding && !info.traits.key_padding) {
    throw std::invalid_argument(name + ": key padding masks are not supported by this variant");
  }
  return info.make(problem, resolve_params(name, info.params, params));
}

std::unique_ptr<Attention> make_attention(const VariantSpec& spec, const Problem& problem) {
  return make_attention(spec.name, problem, spec.params);
}

}  // namespace attnbench
