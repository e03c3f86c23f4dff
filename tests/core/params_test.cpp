#include <gtest/gtest.h>

#include "attention/params.h"
#include "attention/registry.h"

namespace attnbench {
namespace {

std::vector<ParamSpec> specs() {
  return {ParamSpec::integer("block", 64, 1, 4096, "tile size"),
          ParamSpec::real("epsilon", 0.0, 0.0, 1.0, "stabiliser"),
          ParamSpec::boolean("orthogonal", true, "orthogonal features"),
          ParamSpec::choice("mode", "merged", {"local", "stride", "merged"}, "pattern"),
          ParamSpec::int_list("global", Json::array(), 0, 1e9, "global positions"),
          ParamSpec::integer("buckets", nullptr, 2, 1e9, "hash buckets", "2 n / chunk")};
}

std::string error_of(const Json& given) {
  try {
    resolve_params("demo", specs(), given);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Params, DefaultsFillMissingKeys) {
  const ParamSet s = resolve_params("demo", specs(), Json::object());
  EXPECT_EQ(s.get_int("block"), 64);
  EXPECT_EQ(s.get_double("epsilon"), 0.0);
  EXPECT_TRUE(s.get_bool("orthogonal"));
  EXPECT_EQ(s.get_string("mode"), "merged");
  EXPECT_TRUE(s.get_int_list("global").empty());
  EXPECT_TRUE(s.is_auto("buckets"));
}

TEST(Params, ValuesAreValidated) {
  const ParamSet s = resolve_params(
      "demo", specs(),
      {{"block", 128.0}, {"mode", "local"}, {"global", {0, 5}}, {"orthogonal", false}});
  EXPECT_EQ(s.get_int("block"), 128);
  EXPECT_EQ(s.get_string("mode"), "local");
  EXPECT_EQ(s.get_int_list("global"), (std::vector<Index>{0, 5}));
  EXPECT_FALSE(s.get_bool("orthogonal"));
}

TEST(Params, UnknownKeyListsValidKeys) {
  const std::string msg = error_of({{"blok", 3}});
  EXPECT_NE(msg.find("demo"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'blok'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("block, epsilon, orthogonal, mode, global, buckets"), std::string::npos)
      << msg;
}

TEST(Params, OutOfRangeNamesParameterValueAndRange) {
  const std::string msg = error_of({{"block", 0}});
  EXPECT_NE(msg.find("'block' = 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1, 4096]"), std::string::npos) << msg;
  EXPECT_NE(error_of({{"block", 1.5}}).find("integer"), std::string::npos);
  EXPECT_NE(error_of({{"epsilon", -1}}).find("'epsilon' = -1"), std::string::npos);
  EXPECT_NE(error_of({{"mode", "diagonal"}}).find("local | stride | merged"), std::string::npos);
  EXPECT_NE(error_of({{"orthogonal", "yes"}}).find("true or false"), std::string::npos);
  EXPECT_NE(error_of({{"global", {1, -2}}}).find("'global'"), std::string::npos);
  EXPECT_NE(error_of(Json::array({1, 2})).find("JSON object"), std::string::npos);
}

TEST(Params, CompactSpecParses) {
  const VariantSpec s = parse_variant_spec("flash:block_q=64, block_k=128");
  EXPECT_EQ(s.name, "flash");
  EXPECT_EQ(s.params.at("block_q"), 64);
  EXPECT_EQ(s.params.at("block_k"), 128);
  const VariantSpec t = parse_variant_spec("longformer:width=4,global=[0,17,42],mode=merged");
  EXPECT_EQ(t.params.at("global"), Json::array({0, 17, 42}));
  EXPECT_EQ(t.params.at("mode"), "merged");
  EXPECT_EQ(parse_variant_spec("full").name, "full");
  EXPECT_TRUE(parse_variant_spec("full").params.empty());
  EXPECT_THROW(parse_variant_spec(":a=1"), std::invalid_argument);
  EXPECT_THROW(parse_variant_spec("flash:block_q"), std::invalid_argument);
}

TEST(Params, CompactSpecRoundTrips) {
  const VariantSpec s = parse_variant_spec("flash:block_k=128,block_q=32");
  EXPECT_EQ(parse_variant_spec(s.to_string()).params, s.params);
}

TEST(Params, VariantErrorsNameVariantParameterAndValue) {
  Problem p;
  p.n_q = p.n_k = 16;
  p.d = p.d_v = 8;
  try {
    make_attention("flash", p, {{"block_q", 0}});
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("flash"), std::string::npos) << msg;
    EXPECT_NE(msg.find("block_q"), std::string::npos) << msg;
    EXPECT_NE(msg.find("0"), std::string::npos) << msg;
  }
  EXPECT_THROW(make_attention("flash", p, {{"tile", 4}}), std::invalid_argument);
}

TEST(Params, ProblemValidation) {
  Problem p;
  p.n_q = 0;
  p.n_k = 4;
  p.d = p.d_v = 4;
  try {
    make_attention("full", p);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("n_q = 0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace attnbench
