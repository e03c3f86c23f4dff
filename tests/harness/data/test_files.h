// Test helpers for tensor files: a scratch directory removed at the end of each test, and byte
// builders for hand-made .npy and .safetensors files.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace attnbench::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "attnbench_data_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  std::string s(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(s.data(), values.data(), s.size());
  return s;
}

inline std::string le_bytes(std::uint64_t x, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(char((x >> (8 * i)) & 0xff));
  return s;
}

// A .npy file of format `major`.0 with the given header dictionary text (padded with spaces to
// a multiple of 64 and ended with '\n' when `pad`) followed by `data`.
inline std::string npy_bytes(int major, std::string dict, const std::string& data,
                             bool pad = true) {
  const std::size_t pre = major == 1 ? 10 : 12;
  if (pad) {
    const std::size_t total = (pre + dict.size() + 1 + 63) / 64 * 64;
    dict.append(total - pre - dict.size() - 1, ' ');
    dict.push_back('\n');
  }
  std::string s = std::string("\x93NUMPY", 6) + char(major) + char(0);
  s += le_bytes(dict.size(), major == 1 ? 2 : 4);
  return s + dict + data;
}

// A .safetensors file with the given JSON header text followed by `data`.
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return le_bytes(header.size(), 8) + header + data;
}

}  // namespace attnbench::testing
