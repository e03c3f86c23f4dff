// Reading and writing tensors as NumPy .npy and .safetensors files, float32 or float64, of shape
// (n, d), (heads, n, d) or (batch, heads, n, d). Errors name the file, the offset or field, and
// what was expected.
#pragma once

#include <string>
#include <vector>

#include "attention/tensor.h"

namespace attnbench {

struct LoadedTensor {
  Tensor4 tensor;            // float32, [batch, heads, n, d] (missing leading dims are 1)
  std::vector<Index> shape;  // the shape as stored in the file (rank 2, 3 or 4)
  std::string dtype;         // "float32" or "float64" as stored
};

// `path` is a .npy file, or a .safetensors file holding one tensor, or "file.safetensors:name"
// to pick a tensor by name. Throws std::runtime_error with a clear message on any defect.
LoadedTensor read_tensor_file(const std::string& path);

// Writes `t` with the given stored shape (rank 2, 3 or 4, same element count) and dtype
// ("float32" or "float64"); the format follows the extension (.npy or .safetensors).
void write_tensor_file(const std::string& path, const Tensor4& t, const std::vector<Index>& shape,
                       const std::string& dtype = "float32", const std::string& name = "out");

}  // namespace attnbench
