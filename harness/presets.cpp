// Looking presets up by name.
#include "harness/presets.h"

namespace attnbench::harness {

Json find_preset(const std::string& name) {
  for (const auto& p : embedded_presets()) {
    if (name == p.name) return Json::parse(p.text);
  }
  return Json();
}

std::vector<std::string> preset_names() {
  std::vector<std::string> out;
  for (const auto& p : embedded_presets()) out.push_back(p.name);
  return out;
}

}  // namespace attnbench::harness
