// Tensor types shared by every part of attnbench.
//
// One head is a row-major matrix: q (n_q, d), k (n_k, d), v (n_k, d_v), out (n_q, d_v).
// A batch is a contiguous [batch, heads, rows, cols] array whose heads are consecutive
// row-major blocks, so a head is an Eigen::Map over a slice and never a copy.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnbench {

using Index = std::int64_t;

// Row-major dynamic matrices. Never build a column-major matrix where one of these views is
// expected: Eigen::Ref would silently copy it.
template <typename T>
using RowMatrixT = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrix = RowMatrixT<float>;
using RowMatrixD = RowMatrixT<double>;

using MatRef = Eigen::Ref<RowMatrix>;
using ConstMatRef = Eigen::Ref<const RowMatrix>;
using MatRefD = Eigen::Ref<RowMatrixD>;
using ConstMatRefD = Eigen::Ref<const RowMatrixD>;

using MatMap = Eigen::Map<RowMatrix>;
using ConstMatMap = Eigen::Map<const RowMatrix>;

// A contiguous row-major [batch, heads, rows, cols] array.
template <typename T>
class Tensor4T {
 public:
  Tensor4T() = default;
  Tensor4T(Index batch, Index heads, Index rows, Index cols)
      : batch_(batch), heads_(heads), rows_(rows), cols_(cols) {
    if (batch < 0 || heads < 0 || rows < 0 || cols < 0) {
      throw std::invalid_argument("Tensor4: negative dimension [" + std::to_string(batch) + ", " +
                                  std::to_string(heads) + ", " + std::to_string(rows) + ", " +
                                  std::to_string(cols) + "]");
    }
    data_.assign(static_cast<std::size_t>(batch * heads * rows * cols), T(0));
  }

  Index batch() const { return batch_; }
  Index heads() const { return heads_; }
  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index size() const { return static_cast<Index>(data_.size()); }
  Index head_size() const { return rows_ * cols_; }

  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  std::vector<T>& storage() { return data_; }
  const std::vector<T>& storage() const { return data_; }

  T* head_data(Index b, Index h) { return data_.data() + (b * heads_ + h) * head_size(); }
  const T* head_data(Index b, Index h) const {
    return data_.data() + (b * heads_ + h) * head_size();
  }

  // (rows, cols) view of head h of batch entry b.
  Eigen::Map<RowMatrixT<T>> head(Index b, Index h) {
    return Eigen::Map<RowMatrixT<T>>(head_data(b, h), rows_, cols_);
  }
  Eigen::Map<const RowMatrixT<T>> head(Index b, Index h) const {
    return Eigen::Map<const RowMatrixT<T>>(head_data(b, h), rows_, cols_);
  }

  T& at(Index b, Index h, Index i, Index j) { return head_data(b, h)[i * cols_ + j]; }
  T at(Index b, Index h, Index i, Index j) const { return head_data(b, h)[i * cols_ + j]; }

  std::string shape_string() const {
    return "[" + std::to_string(batch_) + ", " + std::to_string(heads_) + ", " +
           std::to_string(rows_) + ", " + std::to_string(cols_) + "]";
  }

 private:
  Index batch_ = 0, heads_ = 0, rows_ = 0, cols_ = 0;
  std::vector<T> data_;
};

using Tensor4 = Tensor4T<float>;
using Tensor4D = Tensor4T<double>;

// Key-padding mask: valid[b * n_k + j] != 0 when key j of batch entry b is a real token.
// An empty mask means every key is valid. Shared by all heads of a batch entry.
class KeyMask {
 public:
  KeyMask() = default;
  KeyMask(Index batch, Index n_k) : batch_(batch), n_k_(n_k), valid_(batch * n_k, 1) {}

  // Keys at positions >= lengths[b] are padding (the usual right-padded batch).
  static KeyMask from_lengths(Index n_k, const std::vector<Index>& lengths) {
    KeyMask mask(static_cast<Index>(lengths.size()), n_k);
    for (Index b = 0; b < mask.batch_; ++b) {
      for (Index j = lengths[b]; j < n_k; ++j) mask.set(b, j, false);
    }
    return mask;
  }

  bool empty() const { return valid_.empty(); }
  Index batch() const { return batch_; }
  Index n_k() const { return n_k_; }
  void set(Index b, Index j, bool valid) { valid_[b * n_k_ + j] = valid ? 1 : 0; }
  bool valid(Index b, Index j) const { return valid_.empty() || valid_[b * n_k_ + j] != 0; }

  // The mask row of batch entry b; empty when there is no mask.
  std::span<const std::uint8_t> row(Index b) const {
    if (valid_.empty()) return {};
    return {valid_.data() + b * n_k_, static_cast<std::size_t>(n_k_)};
  }

 private:
  Index batch_ = 0, n_k_ = 0;
  std::vector<std::uint8_t> valid_;
};

}  // namespace attnbench
