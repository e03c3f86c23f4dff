// Tensor files: NumPy .npy (format 1.0/2.0/3.0) and .safetensors, float32/float64, rank 2-4.
// Time O(size of the file); memory O(one tensor) (float64 is converted in bounded chunks).
// Formats: numpy.lib.format (NEP 1) and huggingface/safetensors' specification.
//
// Why .npy is read by hand rather than with xtensor's loader (libxtensor-dev in Debian 12): that
// loader (xtensor/xnpy.hpp) does not check that the data read is complete, so a truncated file
// yields uninitialised values instead of an error; it rejects format 3.0; it requires the header
// keys in one order (which the format does not promise); its errors ("invalid header") name no
// file, field or offset; and it needs the element type at compile time and would add xtensor
// and xtl to the build for what is a 10-byte preamble and a three-key dictionary literal. The
// format is small and fully specified, and every defect here gets a precise message. The
// .safetensors header is JSON and is parsed with nlohmann_json, already a dependency.
#include "harness/data/tensor_io.h"

#include <unistd.h>
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace attnbench {
namespace {

static_assert(std::endian::native == std::endian::little,
              "tensor files are little-endian and read without byte swapping");

using Json = nlohmann::json;

constexpr std::uint64_t kMaxSafetensorsHeader = 100'000'000;  // the reference library's limit
constexpr std::uint64_t kMaxElements = std::uint64_t(1) << 50;

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw std::runtime_error(path + ": " + message);
}

std::string shape_string(const std::vector<Index>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

enum class Format { kNpy, kSafetensors };

struct Target {
  std::string file;    // the path on disk
  std::string tensor;  // safetensors tensor name ("" = the only one)
  Format format;
};

// "x.npy", "x.safetensors" or "x.safetensors:name". A path that itself contains ':' still works
// when it ends in one of the extensions.
Target parse_target(const std::string& path) {
  if (ends_with(path, ".npy")) return {path, "", Format::kNpy};
  if (ends_with(path, ".safetensors")) return {path, "", Format::kSafetensors};
  const auto colon = path.rfind(':');
  if (colon != std::string::npos && ends_with(path.substr(0, colon), ".safetensors")) {
    return {path.substr(0, colon), path.substr(colon + 1), Format::kSafetensors};
  }
  fail(path, "expected a .npy file, a .safetensors file, or file.safetensors:tensor_name");
}

// Where the tensor's data lies and what it is, after the header has been validated.
struct Layout {
  std::vector<Index> shape;
  std::string dtype;  // "float32" | "float64"
  std::uint64_t offset = 0;
  std::uint64_t count = 0;  // elements
};

std::uint64_t item_size(const std::string& dtype) { return dtype == "float64" ? 8 : 4; }

// Rank 2..4, every dimension >= 1, and an element count that cannot overflow.
std::uint64_t checked_count(const std::string& path, const std::string& field,
                            const std::vector<Index>& shape) {
  if (shape.size() < 2 || shape.size() > 4) {
    fail(path, field + " is " + shape_string(shape) + " (rank " + std::to_string(shape.size()) +
                   "), expected rank 2 (n, d), 3 (heads, n, d) or 4 (batch, heads, n, d)");
  }
  std::uint64_t count = 1;
  for (Index dim : shape) {
    if (dim < 1)
      fail(path, field + " is " + shape_string(shape) + ", expected every dimension >= 1");
    if (std::uint64_t(dim) > kMaxElements / count) {
      fail(path, field + " is " + shape_string(shape) + ": too many elements");
    }
    count *= std::uint64_t(dim);
  }
  return count;
}

class InputFile {
 public:
  explicit InputFile(std::string path) : path_(std::move(path)) {
    std::error_code ec;
    if (std::filesystem::is_directory(path_, ec)) fail(path_, "is a directory, expected a file");
    file_ = std::fopen(path_.c_str(), "rb");
    if (!file_) fail(path_, std::string("cannot open: ") + std::strerror(errno));
    if (fseeko(file_, 0, SEEK_END) != 0) fail(path_, "cannot seek");
    size_ = static_cast<std::uint64_t>(ftello(file_));
  }
  ~InputFile() {
    if (file_) std::fclose(file_);
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }

  // Reads exactly n bytes at `offset`; `what` names them in the error if the file is too short.
  void read(std::uint64_t offset, void* dst, std::uint64_t n, const std::string& what) {
    if (offset > size_ || n > size_ - offset) {
      fail(path_, "truncated: " + what + " needs bytes [" + std::to_string(offset) + ", " +
                      std::to_string(offset + n) + ") but the file has " + std::to_string(size_) +
                      " bytes");
    }
    if (n == 0) return;
    if (fseeko(file_, static_cast<off_t>(offset), SEEK_SET) != 0 ||
        std::fread(dst, 1, n, file_) != n) {
      fail(path_, "read error at offset " + std::to_string(offset) + ": " + std::strerror(errno));
    }
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  std::uint64_t size_ = 0;
};

// ---------------------------------------------------------------------------------------------
// .npy

constexpr char kNpyMagic[] = "\x93NUMPY";

// A parser for the header's Python dictionary literal, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// It accepts what numpy writes and what ast.literal_eval would accept for these three keys
// (either quote style, any key order, optional trailing commas, Python 2 'L' suffixes).
class NpyHeaderParser {
 public:
  NpyHeaderParser(const std::string& path, const std::string& text, std::uint64_t base)
      : path_(path), s_(text), base_(base) {}

  Layout parse() {
    Layout layout;
    bool have_descr = false, have_fortran = false, have_shape = false;
    skip_ws();
    expect('{', "'{' opening the header dictionary");
    skip_ws();
    while (peek() != '}') {
      const std::uint64_t key_at = offset();
      const std::string key = parse_string("a quoted key");
      skip_ws();
      expect(':', "':' after key '" + key + "'");
      skip_ws();
      if (key == "descr") {
        have_descr = true;
        layout.dtype = parse_descr();
      } else if (key == "fortran_order") {
        have_fortran = true;
        if (parse_bool(key)) {
          fail(path_, "field 'fortran_order' is True at offset " + std::to_string(key_at) +
                          ": Fortran-order arrays are not supported, expected False (C order; "
                          "save np.ascontiguousarray(x))");
        }
      } else if (key == "shape") {
        have_shape = true;
        layout.shape = parse_shape();
      } else {
        fail(path_, "unexpected header key '" + key + "' at offset " + std::to_string(key_at) +
                        ", expected only 'descr', 'fortran_order' and 'shape'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
      } else if (peek() != '}') {
        error("',' or '}' after the value of '" + key + "'");
      }
    }
    ++pos_;
    while (pos_ < s_.size()) {
      if (s_[pos_] != ' ' && s_[pos_] != '\n' && s_[pos_] != '\t' && s_[pos_] != '\r' &&
          s_[pos_] != '\0') {
        error("only padding after the closing '}'");
      }
      ++pos_;
    }
    for (auto [have, name] :
         {std::pair{have_descr, "descr"}, std::pair{have_fortran, "fortran_order"},
          std::pair{have_shape, "shape"}}) {
      if (!have) fail(path_, std::string("header has no '") + name + "' key");
    }
    return layout;
  }

 private:
  std::uint64_t offset() const { return base_ + pos_; }
  char peek() const {
    if (pos_ >= s_.size()) {
      fail(path_, "malformed header: ends at offset " + std::to_string(base_ + s_.size()) +
                      " before the dictionary is closed");
    }
    return s_[pos_];
  }
  [[noreturn]] void error(const std::string& expected) const {
    std::string found = pos_ < s_.size() ? std::string("'") + s_[pos_] + "'" : "the end";
    fail(path_, "malformed header at offset " + std::to_string(offset()) + ": expected " +
                    expected + ", found " + found);
  }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  void expect(char c, const std::string& what) {
    if (pos_ >= s_.size() || s_[pos_] != c) error(what);
    ++pos_;
  }
  std::string parse_string(const std::string& what) {
    const char quote = pos_ < s_.size() ? s_[pos_] : 0;
    if (quote != '\'' && quote != '"') error(what);
    const std::size_t start = ++pos_;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\') error("no escape sequences in " + what);
      ++pos_;
    }
    if (pos_ >= s_.size()) error("a closing quote");
    return s_.substr(start, pos_++ - start);
  }
  std::string parse_descr() {
    const std::uint64_t at = offset();
    if (peek() == '[') {
      fail(path_, "field 'descr' at offset " + std::to_string(at) +
                      " is a structured dtype, expected '<f4' (float32) or '<f8' (float64)");
    }
    const std::string d = parse_string("a dtype string for 'descr'");
    if (d == "<f4") return "float32";
    if (d == "<f8") return "float64";
    if (d == ">f4" || d == ">f8") {
      fail(path_, "field 'descr' is '" + d + "' at offset " + std::to_string(at) +
                      ": big-endian data is not supported, expected little-endian '<f4' or "
                      "'<f8' (save x.astype('<f4'))");
    }
    fail(path_, "field 'descr' is '" + d + "' at offset " + std::to_string(at) +
                    ": unsupported dtype, expected '<f4' (float32) or '<f8' (float64)");
  }
  bool parse_bool(const std::string& key) {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    error("True or False for '" + key + "'");
  }
  std::vector<Index> parse_shape() {
    std::vector<Index> shape;
    expect('(', "a tuple '(...)' for 'shape'");
    skip_ws();
    while (peek() != ')') {
      if (peek() == '-') {
        fail(path_, "field 'shape' has a negative dimension at offset " + std::to_string(offset()) +
                        ", expected dimensions >= 1");
      }
      if (!std::isdigit(static_cast<unsigned char>(peek())))
        error("an integer dimension in 'shape'");
      std::uint64_t value = 0;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
        value = value * 10 + std::uint64_t(s_[pos_] - '0');
        if (value > kMaxElements) {
          fail(path_,
               "field 'shape' has a dimension too large at offset " + std::to_string(offset()));
        }
        ++pos_;
      }
      if (pos_ < s_.size() && (s_[pos_] == 'L' || s_[pos_] == 'l')) ++pos_;
      shape.push_back(static_cast<Index>(value));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
      } else if (peek() != ')') {
        error("',' or ')' in 'shape'");
      }
    }
    ++pos_;
    return shape;
  }

  const std::string& path_;
  const std::string& s_;
  std::uint64_t base_;
  std::size_t pos_ = 0;
};

Layout npy_layout(InputFile& file) {
  const std::string& path = file.path();
  unsigned char pre[8];
  if (file.size() < 10) {
    fail(path, "truncated: " + std::to_string(file.size()) +
                   " bytes, expected at least the 10-byte .npy preamble");
  }
  file.read(0, pre, 8, "the magic string and version");
  if (std::memcmp(pre, kNpyMagic, 6) != 0) {
    fail(path,
         "not a .npy file: the first 6 bytes (offset 0) are not the magic string "
         "\\x93NUMPY");
  }
  const int major = pre[6], minor = pre[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
    fail(path, "format version " + std::to_string(major) + "." + std::to_string(minor) +
                   " at offset 6, expected 1.0, 2.0 or 3.0");
  }
  std::uint64_t header_len = 0, header_at = 0;
  if (major == 1) {
    unsigned char b[2];
    file.read(8, b, 2, "the 2-byte header length");
    header_len = std::uint64_t(b[0]) | (std::uint64_t(b[1]) << 8);
    header_at = 10;
  } else {
    unsigned char b[4];
    file.read(8, b, 4, "the 4-byte header length");
    header_len = std::uint64_t(b[0]) | (std::uint64_t(b[1]) << 8) | (std::uint64_t(b[2]) << 16) |
                 (std::uint64_t(b[3]) << 24);
    header_at = 12;
  }
  if (header_at + header_len > file.size()) {
    fail(path, "truncated: the header length at offset 8 says " + std::to_string(header_len) +
                   " bytes, ending at offset " + std::to_string(header_at + header_len) +
                   ", but the file has " + std::to_string(file.size()) + " bytes");
  }
  std::string text(header_len, '\0');
  file.read(header_at, text.data(), header_len, "the header");
  Layout layout = NpyHeaderParser(path, text, header_at).parse();
  layout.count = checked_count(path, "field 'shape'", layout.shape);
  layout.offset = header_at + header_len;
  const std::uint64_t bytes = layout.count * item_size(layout.dtype);
  const std::uint64_t have = file.size() - layout.offset;
  if (have < bytes) {
    fail(path, "truncated data: shape " + shape_string(layout.shape) + " of " + layout.dtype +
                   " needs " + std::to_string(bytes) + " bytes from offset " +
                   std::to_string(layout.offset) + ", but the file has only " +
                   std::to_string(have));
  }
  if (have > bytes) {
    fail(path, std::to_string(have - bytes) + " bytes after the data (shape " +
                   shape_string(layout.shape) + " of " + layout.dtype + " ends at offset " +
                   std::to_string(layout.offset + bytes) + ", the file at " +
                   std::to_string(file.size()) + "): expected exactly one array");
  }
  return layout;
}

// ---------------------------------------------------------------------------------------------
// .safetensors

std::uint64_t safetensors_item_size(const std::string& dtype) {
  if (dtype == "BOOL" || dtype == "U8" || dtype == "I8" || dtype == "F8_E5M2" ||
      dtype == "F8_E4M3" || dtype == "F8_E8M0") {
    return 1;
  }
  if (dtype == "I16" || dtype == "U16" || dtype == "F16" || dtype == "BF16") return 2;
  if (dtype == "I32" || dtype == "U32" || dtype == "F32") return 4;
  if (dtype == "I64" || dtype == "U64" || dtype == "F64") return 8;
  return 0;
}

Layout safetensors_layout(InputFile& file, const std::string& wanted) {
  const std::string& path = file.path();
  if (file.size() < 8) {
    fail(path, "truncated: " + std::to_string(file.size()) +
                   " bytes, expected at least the 8-byte header length");
  }
  unsigned char b[8];
  file.read(0, b, 8, "the header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | b[i];
  if (header_len > kMaxSafetensorsHeader) {
    fail(path, "header length " + std::to_string(header_len) +
                   " at offset 0 exceeds the 100 MB limit: not a .safetensors file?");
  }
  if (8 + header_len > file.size()) {
    fail(path, "truncated: the header length at offset 0 says " + std::to_string(header_len) +
                   " bytes, ending at offset " + std::to_string(8 + header_len) +
                   ", but the file has " + std::to_string(file.size()) + " bytes");
  }
  std::string text(header_len, '\0');
  file.read(8, text.data(), header_len, "the header");
  if (text.empty() || text[0] != '{') {
    fail(path, "header at offset 8 does not start with '{', expected a JSON object");
  }
  Json header;
  try {
    header = Json::parse(text);
  } catch (const Json::parse_error& e) {
    fail(path, "malformed JSON header (byte " + std::to_string(8 + e.byte - 1) +
                   " of the file): " + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  const std::uint64_t data_at = 8 + header_len;
  const std::uint64_t buffer = file.size() - data_at;
  struct Entry {
    std::string name, dtype;
    std::vector<Index> shape;
    std::uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = "tensor '" + name + "'";
    if (!info.is_object()) {
      fail(path, where + " is not an object, expected {dtype, shape, data_offsets}");
    }
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!info.contains(field)) fail(path, where + " has no '" + field + "' field");
    }
    const Json& jdtype = info.at("dtype");
    const Json& jshape = info.at("shape");
    const Json& joff = info.at("data_offsets");
    if (!jdtype.is_string()) {
      fail(path, where + " field 'dtype' is " + jdtype.dump() + ", expected a string");
    }
    const std::string dtype = jdtype.get<std::string>();
    const std::uint64_t isize = safetensors_item_size(dtype);
    if (isize == 0) {
      fail(path, where + " field 'dtype' is \"" + dtype + "\": unknown safetensors dtype");
    }
    if (!jshape.is_array()) {
      fail(path, where + " field 'shape' is " + jshape.dump() + ", expected a list of integers");
    }
    std::vector<Index> shape;
    std::uint64_t count = 1;
    for (const auto& dim : jshape) {
      if (!dim.is_number_unsigned()) {
        fail(path,
             where + " field 'shape' is " + jshape.dump() + ", expected non-negative integers");
      }
      const std::uint64_t x = dim.get<std::uint64_t>();
      if (x != 0 && x > kMaxElements / std::max<std::uint64_t>(count, 1)) {
        fail(path, where + " field 'shape' is " + jshape.dump() + ": too many elements");
      }
      count *= x;
      shape.push_back(static_cast<Index>(x));
    }
    if (!joff.is_array() || joff.size() != 2 || !joff[0].is_number_unsigned() ||
        !joff[1].is_number_unsigned()) {
      fail(path, where + " field 'data_offsets' is " + joff.dump() + ", expected [begin, end]");
    }
    const std::uint64_t begin = joff[0].get<std::uint64_t>(), end = joff[1].get<std::uint64_t>();
    if (begin > end || end > buffer) {
      fail(path, where + " field 'data_offsets' is [" + std::to_string(begin) + ", " +
                     std::to_string(end) + "], expected 0 <= begin <= end <= " +
                     std::to_string(buffer) + " (the data buffer runs from offset " +
                     std::to_string(data_at) + " to the end of the file)");
    }
    if (end - begin != count * isize) {
      fail(path, where + " field 'data_offsets' is [" + std::to_string(begin) + ", " +
                     std::to_string(end) + "] (" + std::to_string(end - begin) +
                     " bytes), expected " + std::to_string(count * isize) + " bytes for shape " +
                     jshape.dump() + " of " + dtype);
    }
    entries.push_back({name, dtype, std::move(shape), begin, end});
  }
  if (entries.empty()) fail(path, "holds no tensor");
  std::string listing;
  for (const auto& e : entries) listing += (listing.empty() ? "" : ", ") + e.name;

  // The tensors must tile the buffer exactly (as the reference implementation checks).
  std::vector<const Entry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin < b->begin || (a->begin == b->begin && a->end < b->end);
  });
  std::uint64_t next = 0;
  for (const Entry* e : order) {
    if (e->begin != next) {
      fail(path, "tensor '" + e->name + "' field 'data_offsets' begins at " +
                     std::to_string(e->begin) + ", expected " + std::to_string(next) +
                     ": tensors must tile the data buffer without gaps or overlap");
    }
    next = e->end;
  }
  if (next != buffer) {
    fail(path, "the tensors cover " + std::to_string(next) + " bytes of the " +
                   std::to_string(buffer) + "-byte data buffer (from offset " +
                   std::to_string(data_at) + "), expected all of it");
  }

  const Entry* pick = nullptr;
  if (wanted.empty()) {
    if (entries.size() > 1) {
      fail(path, "holds " + std::to_string(entries.size()) + " tensors (" + listing +
                     "), expected one: pick one with " + path + ":NAME");
    }
    pick = &entries.front();
  } else {
    for (const auto& e : entries) {
      if (e.name == wanted) pick = &e;
    }
    if (!pick) fail(path, "has no tensor named '" + wanted + "'; tensors: " + listing);
  }
  const std::string where = "tensor '" + pick->name + "'";
  if (pick->dtype != "F32" && pick->dtype != "F64") {
    fail(path, where + " field 'dtype' is \"" + pick->dtype + "\", expected \"F32\" or \"F64\"");
  }
  Layout chosen;
  chosen.dtype = pick->dtype == "F32" ? "float32" : "float64";
  chosen.shape = pick->shape;
  chosen.offset = data_at + pick->begin;
  chosen.count = checked_count(path, where + " field 'shape'", pick->shape);
  return chosen;
}

Layout layout_of(const Target& target, InputFile& file) {
  return target.format == Format::kNpy ? npy_layout(file) : safetensors_layout(file, target.tensor);
}

void fill_dims(const std::vector<Index>& shape, Index& batch, Index& heads, Index& rows,
               Index& cols) {
  const std::size_t r = shape.size();
  batch = r == 4 ? shape[0] : 1;
  heads = r >= 3 ? shape[r - 3] : 1;
  rows = shape[r - 2];
  cols = shape[r - 1];
}

// ---------------------------------------------------------------------------------------------
// Writing

class OutputFile {
 public:
  explicit OutputFile(std::string path) : path_(std::move(path)) {
    tmp_ = path_ + ".tmp." + std::to_string(::getpid());
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (!file_) fail(path_, std::string("cannot open for writing: ") + std::strerror(errno));
  }
  ~OutputFile() {
    if (file_) {
      std::fclose(file_);
      std::remove(tmp_.c_str());
    }
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, std::size_t n) {
    if (n && std::fwrite(data, 1, n, file_) != n) {
      fail(path_, std::string("write failed: ") + std::strerror(errno));
    }
  }
  void commit() {
    const bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
    const int err = errno;
    std::fclose(file_);
    file_ = nullptr;
    if (!ok) {
      std::remove(tmp_.c_str());
      fail(path_, std::string("write failed: ") + std::strerror(err));
    }
    std::error_code ec;
    std::filesystem::rename(tmp_, path_, ec);
    if (ec) {
      std::remove(tmp_.c_str());
      fail(path_, "cannot rename the written file into place: " + ec.message());
    }
  }

 private:
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
};

void write_data(OutputFile& out, const Tensor4& t, const std::string& dtype) {
  if (dtype == "float32") {
    out.write(t.data(), std::size_t(t.size()) * sizeof(float));
    return;
  }
  constexpr std::size_t kChunk = 1 << 16;
  std::vector<double> buf(kChunk);
  for (std::size_t i = 0; i < std::size_t(t.size()); i += kChunk) {
    const std::size_t n = std::min(kChunk, std::size_t(t.size()) - i);
    for (std::size_t j = 0; j < n; ++j) buf[j] = double(t.data()[i + j]);
    out.write(buf.data(), n * sizeof(double));
  }
}

}  // namespace

TensorFileInfo inspect_tensor_file(const std::string& path) {
  const Target target = parse_target(path);
  InputFile file(target.file);
  const Layout layout = layout_of(target, file);
  TensorFileInfo info;
  info.shape = layout.shape;
  info.dtype = layout.dtype;
  fill_dims(layout.shape, info.batch, info.heads, info.rows, info.cols);
  return info;
}

LoadedTensor read_tensor_file(const std::string& path) {
  const Target target = parse_target(path);
  InputFile file(target.file);
  const Layout layout = layout_of(target, file);
  Index batch, heads, rows, cols;
  fill_dims(layout.shape, batch, heads, rows, cols);
  LoadedTensor result{Tensor4(batch, heads, rows, cols), layout.shape, layout.dtype};
  float* dst = result.tensor.data();
  if (layout.dtype == "float32") {
    file.read(layout.offset, dst, layout.count * 4, "the data");
    return result;
  }
  // float64: convert in bounded chunks so that the peak memory stays one float32 tensor.
  constexpr std::uint64_t kChunk = 1 << 16;
  std::vector<double> buf(kChunk);
  for (std::uint64_t i = 0; i < layout.count; i += kChunk) {
    const std::uint64_t n = std::min(kChunk, layout.count - i);
    file.read(layout.offset + i * 8, buf.data(), n * 8, "the data");
    for (std::uint64_t j = 0; j < n; ++j) {
      const double x = buf[j];
      if (std::isfinite(x) && std::fabs(x) > double(std::numeric_limits<float>::max())) {
        fail(target.file, "element " + std::to_string(i + j) + " (offset " +
                              std::to_string(layout.offset + (i + j) * 8) + ") is " +
                              std::to_string(x) + ", expected a value within float32's range");
      }
      dst[i + j] = static_cast<float>(x);
    }
  }
  return result;
}

void write_tensor_file(const std::string& path, const Tensor4& t,
                       const std::vector<Index>& shape_in, const std::string& dtype,
                       const std::string& name) {
  const std::vector<Index> shape =
      shape_in.empty() ? std::vector<Index>{t.batch(), t.heads(), t.rows(), t.cols()} : shape_in;
  if (dtype != "float32" && dtype != "float64") {
    throw std::invalid_argument(path + ": dtype '" + dtype + "', expected float32 or float64");
  }
  std::uint64_t count = 0;
  try {
    count = checked_count(path, "shape", shape);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(e.what());
  }
  if (count != std::uint64_t(t.size())) {
    throw std::invalid_argument(path + ": shape " + shape_string(shape) + " has " +
                                std::to_string(count) + " elements, the tensor " +
                                t.shape_string() + " has " + std::to_string(t.size()));
  }
  Format format;
  if (ends_with(path, ".npy")) {
    format = Format::kNpy;
  } else if (ends_with(path, ".safetensors")) {
    format = Format::kSafetensors;
  } else {
    throw std::invalid_argument(path + ": expected a .npy or .safetensors file name");
  }
  const std::uint64_t bytes = count * item_size(dtype);
  OutputFile out(path);
  if (format == Format::kNpy) {
    std::string header = std::string("{'descr': '") + (dtype == "float32" ? "<f4" : "<f8") +
                         "', 'fortran_order': False, 'shape': " + shape_string(shape) + ", }";
    // numpy pads the preamble and header to a multiple of 64 bytes, ending in '\n'.
    const std::size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
    header.append(total - 10 - header.size() - 1, ' ');
    header.push_back('\n');
    const unsigned char pre[10] = {0x93,
                                   'N',
                                   'U',
                                   'M',
                                   'P',
                                   'Y',
                                   1,
                                   0,
                                   static_cast<unsigned char>(header.size() & 0xff),
                                   static_cast<unsigned char>(header.size() >> 8)};
    out.write(pre, 10);
    out.write(header.data(), header.size());
  } else {
    if (name.empty() || name == "__metadata__") {
      throw std::invalid_argument(path + ": tensor name '" + name + "' is not allowed");
    }
    Json info = {{"dtype", dtype == "float32" ? "F32" : "F64"},
                 {"shape", shape},
                 {"data_offsets", {0, bytes}}};
    std::string header = Json{{name, info}}.dump();
    // The reference implementation pads the header with spaces to a multiple of 8 bytes.
    header.append((8 - header.size() % 8) % 8, ' ');
    unsigned char len[8];
    for (int i = 0; i < 8; ++i)
      len[i] = static_cast<unsigned char>(std::uint64_t(header.size()) >> (8 * i));
    out.write(len, 8);
    out.write(header.data(), header.size());
  }
  write_data(out, t, dtype);
  out.commit();
}

}  // namespace attnbench
