#include "attention/attention.h"
#include "attention/parallel.h"

#include <tbb/blocked_range.h>

namespace attnbench {

Attention::Attention(std::string name, const Problem& problem, ParamSet params)
    : params_(std::move(params)), name_(std::move(name)), problem_(problem) {
  problem_.validate();
}

void Attention::reject(const std::string& key, const Json& value,
                       const std::string& expected) const {
  throw std::invalid_argument(name_ + ": parameter '" + key + "' = " + value.dump() +
                              ", expected " + expected + " (" + problem_.to_string() + ")");
}

namespace {

void check_shape(const char* what, const Tensor4& t, Index batch, Index heads, Index rows,
                 Index cols, const std::string& variant) {
  if (t.batch() != batch || t.heads() != heads || t.rows() != rows || t.cols() != cols) {
    throw std::invalid_argument(variant + ": " + what + " has shape " + t.shape_string() +
                                ", expected [" + std::to_string(batch) + ", " +
                                std::to_string(heads) + ", " + std::to_string(rows) + ", " +
                                std::to_string(cols) + "]");
  }
}

}  // namespace

void Attention::forward(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
                        const KeyMask& mask) {
  const Problem& p = problem_;
  check_shape("q", q, p.batch, p.heads, p.n_q, p.d, name_);
  check_shape("k", k, p.batch, p.heads, p.n_k, p.d, name_);
  check_shape("v", v, p.batch, p.heads, p.n_k, p.d_v, name_);
  check_shape("out", out, p.batch, p.heads, p.n_q, p.d_v, name_);
  if (!mask.empty()) {
    if (!p.key_padding) {
      throw std::invalid_argument(name_ +
                                  ": a key mask was passed but the problem was set up "
                                  "without key_padding");
    }
    if (mask.batch() != p.batch || mask.n_k() != p.n_k) {
      throw std::invalid_argument(name_ + ": key mask is [" + std::to_string(mask.batch()) + ", " +
                                  std::to_string(mask.n_k()) + "], expected [" +
                                  std::to_string(p.batch) + ", " + std::to_string(p.n_k) + "]");
    }
  }
  compute(q, k, v, out, mask);
}

void HeadwiseAttention::compute(const Tensor4& q, const Tensor4& k, const Tensor4& v, Tensor4& out,
                                const KeyMask& mask) {
  const Index heads = problem().heads;
  const Index total = problem().batch * heads;
  attnbench::parallel_for(tbb::blocked_range<Index>(0, total, 1), [&](const auto& range) {
    for (Index bh = range.begin(); bh < range.end(); ++bh) {
      const Index b = bh / heads, h = bh % heads;
      HeadInput in{q.head(b, h), k.head(b, h), v.head(b, h), mask.row(b), b, h};
      forward_head(in, out.head(b, h));
    }
  });
}

}  // namespace attnbench
