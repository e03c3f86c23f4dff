// Placeholder until the file readers land.
#include "harness/data/tensor_io.h"

#include <stdexcept>

namespace attnbench {

LoadedTensor read_tensor_file(const std::string& path) {
  throw std::runtime_error(path + ": tensor files are not supported yet");
}

void write_tensor_file(const std::string& path, const Tensor4&, const std::vector<Index>&,
                       const std::string&, const std::string&) {
  throw std::runtime_error(path + ": tensor files are not supported yet");
}

}  // namespace attnbench
