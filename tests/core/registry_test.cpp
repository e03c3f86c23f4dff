// Every expected variant is registered: a registration the linker dropped fails here loudly.
#include <gtest/gtest.h>

#include <algorithm>

#include "attention/registry.h"

namespace attnbench {
namespace {

// One name per variant file. Adding a variant adds its name here.
// clang-format off
const std::vector<std::string> kExpectedVariants = {
    // exact
    "full",
    "flash",
    "chunked",

    // sparse
    "window",
    "local_blocks",
    "strided",
    "fixed",
    "bigbird",
    "longformer",

    // lsh
    "reformer",
    "reformer_qk",

    // hierarchical
    "h1d",
    "pooled",

    // approximate
    "linear",
    "linformer",
    "nystrom",
    "performer",
    "scatterbrain",
};
// clang-format on

TEST(Registry, EveryExpectedVariantIsRegistered) {
  const auto names = Registry::instance().names(/*include_hidden=*/true);
  for (const auto& expected : kExpectedVariants) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end())
        << "variant '" << expected << "' is not registered (dropped by the linker?)";
  }
}

TEST(Registry, NoUnexpectedVisibleVariant) {
  // A visible variant missing from kExpectedVariants is a file added without its test entry.
  for (const auto& name : Registry::instance().names()) {
    EXPECT_NE(std::find(kExpectedVariants.begin(), kExpectedVariants.end(), name),
              kExpectedVariants.end())
        << "variant '" << name << "' is registered but not listed in kExpectedVariants";
  }
}

TEST(Registry, EveryVariantIsDescribed) {
  for (const auto& name : Registry::instance().names(true)) {
    const VariantInfo& info = Registry::instance().get(name);
    EXPECT_FALSE(info.summary.empty()) << name;
    EXPECT_FALSE(info.traits.family.empty()) << name;
    EXPECT_FALSE(info.traits.time_complexity.empty()) << name;
    EXPECT_FALSE(info.traits.memory_complexity.empty()) << name;
    EXPECT_TRUE(bool(info.cost)) << name << " has no cost model";
    for (const auto& p : info.params) {
      EXPECT_FALSE(p.doc.empty()) << name << "." << p.name << " is undocumented";
      if (p.default_value.is_null()) {
        EXPECT_FALSE(p.auto_rule.empty()) << name << "." << p.name << " is auto without a rule";
      }
    }
  }
}

TEST(Registry, UnknownVariantListsTheRegisteredOnes) {
  try {
    Registry::instance().get("no_such_variant");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no_such_variant"), std::string::npos) << msg;
    EXPECT_NE(msg.find("flash"), std::string::npos) << msg;
  }
}

TEST(Registry, DescribeIsValidJson) {
  for (const auto& name : Registry::instance().names()) {
    const Json j = Registry::instance().get(name).describe();
    EXPECT_EQ(j.at("name"), name);
    EXPECT_TRUE(j.at("params").is_array());
  }
}

}  // namespace
}  // namespace attnbench
