// `chunked` (Rabe & Staats) equals exact attention for every chunk shape, including chunks that
// do not divide n and chunks in which a row sees no allowed key.
#include <gtest/gtest.h>

#include "tests/testing/test_util.h"

namespace attnbench {
namespace {

using testing::error_vs_reference;
using testing::exact_tolerance;
using testing::make_inputs;
using testing::make_problem;
using testing::run_variant;

TEST(Chunked, MatchesReferenceForEveryChunkShape) {
  for (Index cq : {1, 7, 64, 100}) {
    for (Index ck : {1, 13, 64, 100}) {
      for (bool causal : {false, true}) {
        const Problem p = make_problem(100, 100, 16, 8, 2, 2, causal, /*key_padding=*/true);
        const auto in = make_inputs(p, 1);
        const Tensor4 out = run_variant("chunked", {{"query_chunk", cq}, {"key_chunk", ck}}, p, in);
        const ErrorMetrics m = error_vs_reference(out, p, in);
        EXPECT_LE(m.max_abs, exact_tolerance(p, in)) << cq << "x" << ck << " causal=" << causal;
        EXPECT_EQ(m.nonfinite, 0);
      }
    }
  }
}

TEST(Chunked, ReportsClippedChunks) {
  const Problem p = make_problem(20, 30, 8, 8, 1, 1);
  auto attn = make_attention("chunked", p);
  EXPECT_EQ(attn->resolved_params().at("query_chunk"), 20);
  EXPECT_EQ(attn->resolved_params().at("key_chunk"), 30);
}

}  // namespace
}  // namespace attnbench
