// The presets shipped inside the program (harness/presets/*.json, embedded at build time).
#pragma once

#include <string>
#include <vector>

#include "attention/params.h"

namespace attnbench::harness {

struct EmbeddedPreset {
  const char* name;
  const char* text;  // the JSON spec
};

// Every preset, in name order.
const std::vector<EmbeddedPreset>& embedded_presets();

// The preset's parsed spec, or null when there is no preset of that name.
Json find_preset(const std::string& name);

std::vector<std::string> preset_names();

}  // namespace attnbench::harness
