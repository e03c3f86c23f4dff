// Reading and writing tensors as NumPy .npy and .safetensors files, float32 or float64, of shape
// (n, d), (heads, n, d) or (batch, heads, n, d). Errors name the file, the offset or field, and
// what was expected.
//
// Formats accepted:
// - .npy: format versions 1.0, 2.0 and 3.0; descr '<f4' or '<f8' (little-endian float32 or
//   float64); fortran_order False (C order); rank 2, 3 or 4, every dimension >= 1; the data
//   exactly fills the rest of the file (a shorter file is truncated, a longer one is rejected
//   too, since a header that under-describes its data is more likely wrong than intended).
// - .safetensors: 8-byte little-endian header length, a JSON header of at most 100 MB mapping
//   tensor names to {"dtype", "shape", "data_offsets"} ("__metadata__" is ignored); every
//   tensor's offsets lie in the data buffer and match its shape and dtype, and the tensors tile
//   the buffer without gaps or overlap (as the reference implementation requires). The tensor
//   read must be F32 or F64; others in the file may have any safetensors dtype.
// float64 data is converted to float32 (values beyond float32's range are an error).
#pragma once

#include <cstdint>
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
// An empty `shape` stores t's own [batch, heads, rows, cols]. `name` is the tensor's name in a
// .safetensors file (ignored for .npy). The file is written to a temporary name beside `path`
// and renamed, so a failed write never leaves a partial file under `path`.
// Bad arguments throw std::invalid_argument; I/O failures std::runtime_error.
void write_tensor_file(const std::string& path, const Tensor4& t, const std::vector<Index>& shape,
                       const std::string& dtype = "float32", const std::string& name = "out");

// The stored shape and dtype of a tensor file, validated like read_tensor_file (header, dtype,
// rank, sizes against the file length) without reading the data.
struct TensorFileInfo {
  std::vector<Index> shape;  // as stored (rank 2, 3 or 4)
  std::string dtype;         // "float32" or "float64"
  // The shape as [batch, heads, n, d] (missing leading dims are 1).
  Index batch = 1, heads = 1, rows = 0, cols = 0;
};
TensorFileInfo inspect_tensor_file(const std::string& path);

}  // namespace attnbench
