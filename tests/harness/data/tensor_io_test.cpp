// Tensor files: .npy and .safetensors round trips over formats, dtypes and ranks; hand-made
// files in every header variant; truncated and malformed files give errors that name the file,
// the field or offset, and what was expected; interoperability with NumPy when it is installed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "attention/random.h"
#include "harness/data/tensor_io.h"
#include "tests/harness/data/test_files.h"

namespace attnbench {
namespace {

using testing::le_bytes;
using testing::npy_bytes;
using testing::raw_bytes;
using testing::safetensors_bytes;
using testing::TempDir;
using testing::write_bytes;

// Values exactly representable in float32, so that float64 round trips compare bitwise.
double exact_value(std::int64_t i) { return double((i * 37) % 1001) / 64.0 - 7.5; }

std::vector<float> exact_floats(std::int64_t n) {
  std::vector<float> v(n);
  for (std::int64_t i = 0; i < n; ++i) v[i] = float(exact_value(i));
  return v;
}
std::vector<double> exact_doubles(std::int64_t n) {
  std::vector<double> v(n);
  for (std::int64_t i = 0; i < n; ++i) v[i] = exact_value(i);
  return v;
}

void expect_exact_values(const Tensor4& t) {
  for (Index i = 0; i < t.size(); ++i) {
    ASSERT_EQ(t.data()[i], float(exact_value(i))) << "element " << i;
  }
}

// Runs `fn`, expects a std::runtime_error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << parts.front() << "'";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) {
      EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Round trips

class RoundTrip : public ::testing::TestWithParam<std::tuple<std::string, std::string, int>> {};

TEST_P(RoundTrip, ShapeDtypeAndValuesSurvive) {
  const auto [ext, dtype, rank] = GetParam();
  TempDir dir;
  const std::vector<std::vector<Index>> shapes = {{}, {}, {7, 5}, {3, 7, 5}, {2, 3, 7, 5}};
  const std::vector<Index> shape = shapes[rank];
  Index b = rank == 4 ? shape[0] : 1, h = rank >= 3 ? shape[rank - 3] : 1;
  Tensor4 t(b, h, 7, 5);
  Rng rng(42);
  for (float& x : t.storage()) x = float(rng.normal());
  t.storage()[3] = std::numeric_limits<float>::denorm_min();
  t.storage()[4] = -0.0f;
  t.storage()[5] = std::numeric_limits<float>::max();
  const std::string path = dir.path("t" + ext);
  write_tensor_file(path, t, shape, dtype, "q");
  const LoadedTensor back = read_tensor_file(path);
  EXPECT_EQ(back.shape, shape);
  EXPECT_EQ(back.dtype, dtype);
  EXPECT_EQ(back.tensor.shape_string(), t.shape_string());
  for (Index i = 0; i < t.size(); ++i) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(back.tensor.data()[i]),
              std::bit_cast<std::uint32_t>(t.data()[i]))
        << "element " << i;
  }
  const TensorFileInfo info = inspect_tensor_file(path);
  EXPECT_EQ(info.shape, shape);
  EXPECT_EQ(info.dtype, dtype);
  EXPECT_EQ(info.batch, b);
  EXPECT_EQ(info.heads, h);
  EXPECT_EQ(info.rows, 7);
  EXPECT_EQ(info.cols, 5);
  // The safetensors name is honoured.
  if (ext == ".safetensors") {
    EXPECT_EQ(read_tensor_file(path + ":q").shape, shape);
  }
}

INSTANTIATE_TEST_SUITE_P(FormatsDtypesRanks, RoundTrip,
                         ::testing::Combine(::testing::Values(".npy", ".safetensors"),
                                            ::testing::Values("float32", "float64"),
                                            ::testing::Values(2, 3, 4)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == ".npy" ? "npy" : "st") +
                                  "_" + std::get<1>(info.param) + "_rank" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(TensorWrite, EmptyShapeStoresTheTensorsOwnShape) {
  TempDir dir;
  Tensor4 t(2, 1, 3, 4);
  write_tensor_file(dir.path("a.npy"), t, {});
  EXPECT_EQ(read_tensor_file(dir.path("a.npy")).shape, (std::vector<Index>{2, 1, 3, 4}));
}

TEST(TensorWrite, NpyHeaderIsAlignedAndTerminated) {
  TempDir dir;
  write_tensor_file(dir.path("a.npy"), Tensor4(1, 1, 3, 4), {3, 4}, "float64");
  const std::string bytes = testing::read_bytes(dir.path("a.npy"));
  const std::size_t header_len = std::uint8_t(bytes[8]) | (std::uint8_t(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  EXPECT_EQ(bytes[10 + header_len - 1], '\n');
  EXPECT_EQ(bytes.size(), 10 + header_len + 12 * 8);
  EXPECT_NE(bytes.find("'descr': '<f8'"), std::string::npos);
  EXPECT_NE(bytes.find("'shape': (3, 4)"), std::string::npos);
}

TEST(TensorWrite, BadArgumentsAreRejected) {
  TempDir dir;
  const Tensor4 t(1, 1, 3, 4);
  EXPECT_THROW(write_tensor_file(dir.path("a.npy"), t, {4, 4}), std::invalid_argument);
  EXPECT_THROW(write_tensor_file(dir.path("a.npy"), t, {12}), std::invalid_argument);
  EXPECT_THROW(write_tensor_file(dir.path("a.npy"), t, {1, 1, 1, 3, 4}), std::invalid_argument);
  EXPECT_THROW(write_tensor_file(dir.path("a.npy"), t, {3, 4}, "float16"), std::invalid_argument);
  EXPECT_THROW(write_tensor_file(dir.path("a.txt"), t, {3, 4}), std::invalid_argument);
  EXPECT_THROW(write_tensor_file(dir.path("a.safetensors"), t, {3, 4}, "float32", ""),
               std::invalid_argument);
  EXPECT_THROW(write_tensor_file(dir.path("missing/a.npy"), t, {3, 4}), std::runtime_error);
  // Nothing was left behind, not even a temporary file.
  EXPECT_TRUE(std::filesystem::is_empty(dir.dir()));
}

// ---------------------------------------------------------------------------------------------
// .npy header variants

TEST(Npy, ReadsFormatVersions2And3) {
  TempDir dir;
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 6), }";
  for (int major : {2, 3}) {
    const std::string path = dir.path("v" + std::to_string(major) + ".npy");
    write_bytes(path, npy_bytes(major, dict, raw_bytes(exact_floats(24))));
    const LoadedTensor t = read_tensor_file(path);
    EXPECT_EQ(t.shape, (std::vector<Index>{4, 6}));
    expect_exact_values(t.tensor);
  }
}

TEST(Npy, AcceptsAnyKeyOrderQuotesTrailingCommasAndLongSuffix) {
  TempDir dir;
  const std::string path = dir.path("a.npy");
  // Keys reordered, double quotes, no trailing comma, Python 2 'L' suffixes, no padding at all.
  write_bytes(path, npy_bytes(1, "{\"shape\": (2L,3L,4L),'fortran_order':False,'descr':'<f8'}",
                              raw_bytes(exact_doubles(24)), /*pad=*/false));
  const LoadedTensor t = read_tensor_file(path);
  EXPECT_EQ(t.shape, (std::vector<Index>{2, 3, 4}));
  EXPECT_EQ(t.dtype, "float64");
  EXPECT_EQ(t.tensor.shape_string(), "[1, 2, 3, 4]");
  expect_exact_values(t.tensor);
}

struct BadNpy {
  std::string name;
  std::string bytes;
  std::vector<std::string> expected;  // fragments of the message besides the file name
};

std::vector<BadNpy> bad_npy_cases() {
  const std::string data = raw_bytes(exact_floats(6));
  auto dict = [](const std::string& descr, const std::string& fortran, const std::string& shape) {
    return "{'descr': " + descr + ", 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
  };
  const std::string good = dict("'<f4'", "False", "(2, 3)");
  const std::string ok = npy_bytes(1, good, data);
  std::vector<BadNpy> c;
  c.push_back({"empty", "", {"truncated", "10-byte"}});
  c.push_back({"bad_magic", "\x93NUMPZ" + ok.substr(6), {"magic", "offset 0"}});
  {
    std::string b = ok;
    b[6] = 4;
    c.push_back({"version_4", b, {"version 4.0", "offset 6", "expected 1.0, 2.0 or 3.0"}});
  }
  {
    std::string b = ok;
    b[7] = 1;
    c.push_back({"version_1_1", b, {"version 1.1"}});
  }
  c.push_back({"header_past_end", ok.substr(0, 40), {"truncated", "header length", "offset 8"}});
  c.push_back({"fortran",
               npy_bytes(1, dict("'<f4'", "True", "(2, 3)"), data),
               {"fortran_order", "True", "expected False"}});
  c.push_back({"big_endian",
               npy_bytes(1, dict("'>f4'", "False", "(2, 3)"), data),
               {"'descr'", "'>f4'", "big-endian", "'<f4'"}});
  c.push_back({"int32",
               npy_bytes(1, dict("'<i4'", "False", "(2, 3)"), data),
               {"'descr'", "'<i4'", "expected '<f4' (float32) or '<f8' (float64)"}});
  c.push_back({"float16", npy_bytes(1, dict("'<f2'", "False", "(2, 3)"), data), {"'<f2'"}});
  c.push_back({"structured",
               npy_bytes(1, dict("[('a', '<f4')]", "False", "(2, 3)"), data),
               {"structured dtype"}});
  c.push_back({"rank1",
               npy_bytes(1, dict("'<f4'", "False", "(6,)"), data),
               {"'shape'", "(6,)", "rank 1", "expected rank 2"}});
  c.push_back({"rank0", npy_bytes(1, dict("'<f4'", "False", "()"), data), {"rank 0"}});
  c.push_back({"rank5", npy_bytes(1, dict("'<f4'", "False", "(1, 1, 1, 2, 3)"), data), {"rank 5"}});
  c.push_back({"zero_dim",
               npy_bytes(1, dict("'<f4'", "False", "(0, 3)"), ""),
               {"(0, 3)", "every dimension >= 1"}});
  c.push_back({"negative_dim",
               npy_bytes(1, dict("'<f4'", "False", "(-2, 3)"), data),
               {"negative dimension"}});
  c.push_back({"truncated_data",
               npy_bytes(1, good, data.substr(0, 17)),
               {"truncated data", "needs 24 bytes", "only 17"}});
  c.push_back({"extra_data", npy_bytes(1, good, data + "abcd"), {"4 bytes after the data"}});
  c.push_back({"missing_shape",
               npy_bytes(1, "{'descr': '<f4', 'fortran_order': False}", data),
               {"no 'shape' key"}});
  c.push_back({"unknown_key",
               npy_bytes(1, "{'descr': '<f4', 'order': 'C'}", data),
               {"unexpected header key 'order'"}});
  c.push_back({"unclosed_dict",
               npy_bytes(1, "{'descr': '<f4', 'fortran_order': False", data),
               {"malformed header", "offset"}});
  c.push_back(
      {"not_a_dict", npy_bytes(1, "['descr']", data), {"malformed header at offset 10", "'{'"}});
  c.push_back({"bad_bool", npy_bytes(1, dict("'<f4'", "Nope", "(2, 3)"), data), {"True or False"}});
  c.push_back(
      {"junk_after_dict", npy_bytes(1, good + " x", data), {"only padding after the closing '}'"}});
  c.push_back(
      {"shape_not_tuple", npy_bytes(1, dict("'<f4'", "False", "[2, 3]"), data), {"a tuple"}});
  c.push_back({"header_len_v2_past_end",
               std::string("\x93NUMPY\x02\x00", 8) + le_bytes(1u << 30, 4) + "{}",
               {"truncated", "1073741824"}});
  return c;
}

TEST(Npy, MalformedFilesGiveClearErrors) {
  TempDir dir;
  for (const auto& bad : bad_npy_cases()) {
    SCOPED_TRACE(bad.name);
    const std::string path = dir.path(bad.name + ".npy");
    write_bytes(path, bad.bytes);
    std::vector<std::string> parts = {path + ": "};
    parts.insert(parts.end(), bad.expected.begin(), bad.expected.end());
    expect_error([&] { read_tensor_file(path); }, parts);
    expect_error([&] { inspect_tensor_file(path); }, {path + ": "});
  }
}

TEST(TensorRead, MissingFileDirectoryAndUnknownExtension) {
  TempDir dir;
  expect_error([&] { read_tensor_file(dir.path("none.npy")); }, {"none.npy: cannot open"});
  std::filesystem::create_directory(dir.path("d.npy"));
  expect_error([&] { read_tensor_file(dir.path("d.npy")); }, {"d.npy: is a directory"});
  expect_error([&] { read_tensor_file(dir.path("a.bin")); }, {"a.bin: expected a .npy file"});
}

TEST(TensorRead, Float64BeyondFloat32RangeIsAnError) {
  TempDir dir;
  std::vector<double> v = exact_doubles(6);
  v[4] = 1e300;
  const std::string path = dir.path("big.npy");
  write_bytes(path, npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
                              raw_bytes(v)));
  expect_error([&] { read_tensor_file(path); }, {"element 4", "float32's range"});
  // Infinities and NaN are carried over (the harness reports non-finite inputs itself).
  v[4] = std::numeric_limits<double>::infinity();
  write_bytes(path, npy_bytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
                              raw_bytes(v)));
  EXPECT_TRUE(std::isinf(read_tensor_file(path).tensor.data()[4]));
}

// ---------------------------------------------------------------------------------------------
// .safetensors

TEST(Safetensors, PicksATensorByNameAndIgnoresMetadata) {
  TempDir dir;
  const std::string path = dir.path("qkv.safetensors");
  // q: F32 (2, 3) at [0, 24); mask: BF16 (2, 2) at [24, 32); k: F64 (1, 2, 3) at [32, 80).
  const nlohmann::json header = {
      {"__metadata__", {{"format", "pt"}}},
      {"q", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
      {"mask", {{"dtype", "BF16"}, {"shape", {2, 2}}, {"data_offsets", {24, 32}}}},
      {"k", {{"dtype", "F64"}, {"shape", {1, 2, 3}}, {"data_offsets", {32, 80}}}}};
  write_bytes(path,
              safetensors_bytes(header.dump(), raw_bytes(exact_floats(6)) + std::string(8, '\0') +
                                                   raw_bytes(exact_doubles(6))));
  const LoadedTensor q = read_tensor_file(path + ":q");
  EXPECT_EQ(q.shape, (std::vector<Index>{2, 3}));
  EXPECT_EQ(q.dtype, "float32");
  expect_exact_values(q.tensor);
  const LoadedTensor k = read_tensor_file(path + ":k");
  EXPECT_EQ(k.shape, (std::vector<Index>{1, 2, 3}));
  EXPECT_EQ(k.dtype, "float64");
  expect_exact_values(k.tensor);
  expect_error([&] { read_tensor_file(path); },
               {path + ": ", "holds 3 tensors", "q", "k", "mask", ":NAME"});
  expect_error([&] { read_tensor_file(path + ":v"); }, {"no tensor named 'v'", "k, mask, q"});
  expect_error([&] { read_tensor_file(path + ":mask"); },
               {"tensor 'mask'", "'dtype'", "BF16", "expected \"F32\" or \"F64\""});
}

struct BadSt {
  std::string name;
  std::string bytes;
  std::vector<std::string> expected;
};

std::vector<BadSt> bad_safetensors_cases() {
  const std::string data = raw_bytes(exact_floats(6));
  auto one = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return R"({"t": {"dtype": ")" + dtype + R"(", "shape": )" + shape + R"(, "data_offsets": )" +
           offsets + "}}";
  };
  std::vector<BadSt> c;
  c.push_back({"short", "abc", {"truncated", "8-byte header length"}});
  c.push_back(
      {"huge_header", le_bytes(std::uint64_t(1) << 40, 8) + "{}", {"exceeds the 100 MB limit"}});
  c.push_back({"header_past_end", le_bytes(500, 8) + "{}", {"truncated", "500", "offset 0"}});
  c.push_back({"not_json", safetensors_bytes("{\"t\": [1, 2", data), {"malformed JSON header"}});
  c.push_back({"not_object", safetensors_bytes("[1, 2]", data), {"does not start with '{'"}});
  c.push_back({"bad_dtype",
               safetensors_bytes(one("F33", "[2, 3]", "[0, 24]"), data),
               {"tensor 't'", "'dtype'", "F33", "unknown safetensors dtype"}});
  c.push_back({"int_dtype",
               safetensors_bytes(one("I32", "[2, 3]", "[0, 24]"), data),
               {"tensor 't'", "I32", "expected \"F32\" or \"F64\""}});
  c.push_back({"offsets_past_buffer",
               safetensors_bytes(one("F32", "[2, 3]", "[0, 48]"), data),
               {"'data_offsets' is [0, 48]", "expected 0 <= begin <= end <= 24"}});
  c.push_back({"offsets_reversed",
               safetensors_bytes(one("F32", "[2, 3]", "[24, 0]"), data),
               {"'data_offsets' is [24, 0]"}});
  c.push_back({"size_mismatch",
               safetensors_bytes(one("F32", "[2, 2]", "[0, 24]"), data),
               {"24 bytes", "expected 16 bytes for shape [2,2] of F32"}});
  c.push_back({"truncated_data",
               safetensors_bytes(one("F32", "[2, 3]", "[0, 24]"), data.substr(0, 20)),
               {"'data_offsets' is [0, 24]", "<= 20"}});
  c.push_back({"trailing_bytes",
               safetensors_bytes(one("F32", "[2, 3]", "[0, 24]"), data + "xx"),
               {"cover 24 bytes of the 26-byte data buffer"}});
  c.push_back(
      {"gap",
       safetensors_bytes(R"({"a": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]},)"
                         R"( "b": {"dtype": "F32", "shape": [1, 4], "data_offsets": [8, 24]}})",
                         data),
       {"tensor 'b'", "begins at 8, expected 4", "without gaps or overlap"}});
  c.push_back({"missing_field",
               safetensors_bytes(R"({"t": {"dtype": "F32", "shape": [2, 3]}})", data),
               {"tensor 't' has no 'data_offsets' field"}});
  c.push_back({"shape_not_list",
               safetensors_bytes(one("F32", "\"2x3\"", "[0, 24]"), data),
               {"'shape'", "expected a list of integers"}});
  c.push_back({"negative_dim",
               safetensors_bytes(one("F32", "[-2, 3]", "[0, 24]"), data),
               {"'shape'", "non-negative"}});
  c.push_back({"rank1",
               safetensors_bytes(one("F32", "[6]", "[0, 24]"), data),
               {"tensor 't' field 'shape'", "rank 1"}});
  c.push_back({"empty", safetensors_bytes(R"({"__metadata__": {}})", ""), {"holds no tensor"}});
  return c;
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  TempDir dir;
  for (const auto& bad : bad_safetensors_cases()) {
    SCOPED_TRACE(bad.name);
    const std::string path = dir.path(bad.name + ".safetensors");
    write_bytes(path, bad.bytes);
    std::vector<std::string> parts = {path + ": "};
    parts.insert(parts.end(), bad.expected.begin(), bad.expected.end());
    expect_error([&] { read_tensor_file(path); }, parts);
  }
}

// ---------------------------------------------------------------------------------------------
// NumPy interoperability (skipped when no Python with NumPy is found)

std::string python_with_numpy() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("ATTNBENCH_PYTHON")) candidates.push_back(env);
  candidates.push_back("python3");
  candidates.push_back("/usr/bin/python3");
  for (const auto& py : candidates) {
    if (std::system((py + " -c 'import numpy' >/dev/null 2>&1").c_str()) == 0) return py;
  }
  return {};
}

constexpr const char* kPyValues = R"(
import json, struct, sys
import numpy as np
from numpy.lib import format as fmt
def vals(shape, dtype):
    i = np.arange(int(np.prod(shape)))
    return (((i * 37) % 1001) / 64.0 - 7.5).reshape(shape).astype(dtype)
)";

TEST(NumpyInterop, ReadsFilesWrittenByNumpy) {
  const std::string py = python_with_numpy();
  if (py.empty()) GTEST_SKIP() << "no python3 with numpy";
  TempDir dir;
  const std::string script = dir.path("write.py");
  write_bytes(script, std::string(kPyValues) + R"(
out = sys.argv[1]
np.save(out + '/f4_r2.npy', vals((5, 3), '<f4'))
np.save(out + '/f8_r3.npy', vals((2, 5, 3), '<f8'))
np.save(out + '/f4_r4.npy', vals((2, 3, 4, 5), '<f4'))
with open(out + '/v2.npy', 'wb') as f:
    fmt.write_array(f, vals((4, 6), '<f4'), version=(2, 0))
with open(out + '/v3.npy', 'wb') as f:
    fmt.write_array(f, vals((4, 6), '<f8'), version=(3, 0))
np.save(out + '/fortran.npy', np.asfortranarray(vals((4, 6), '<f4')))
np.save(out + '/big.npy', vals((4, 6), '>f4'))
np.save(out + '/int.npy', np.arange(6, dtype='<i4').reshape(2, 3))
)");
  ASSERT_EQ(std::system((py + " " + script + " " + dir.dir().string()).c_str()), 0);
  struct Case {
    std::string file;
    std::vector<Index> shape;
    std::string dtype;
  };
  for (const Case& c :
       {Case{"f4_r2.npy", {5, 3}, "float32"}, Case{"f8_r3.npy", {2, 5, 3}, "float64"},
        Case{"f4_r4.npy", {2, 3, 4, 5}, "float32"}, Case{"v2.npy", {4, 6}, "float32"},
        Case{"v3.npy", {4, 6}, "float64"}}) {
    SCOPED_TRACE(c.file);
    const LoadedTensor t = read_tensor_file(dir.path(c.file));
    EXPECT_EQ(t.shape, c.shape);
    EXPECT_EQ(t.dtype, c.dtype);
    expect_exact_values(t.tensor);
  }
  expect_error([&] { read_tensor_file(dir.path("fortran.npy")); }, {"fortran_order"});
  expect_error([&] { read_tensor_file(dir.path("big.npy")); }, {"big-endian"});
  expect_error([&] { read_tensor_file(dir.path("int.npy")); }, {"'<i4'"});
}

TEST(NumpyInterop, NumpyReadsFilesWeWrite) {
  const std::string py = python_with_numpy();
  if (py.empty()) GTEST_SKIP() << "no python3 with numpy";
  TempDir dir;
  auto exact_tensor = [](Index b, Index h, Index n, Index d) {
    Tensor4 t(b, h, n, d);
    for (Index i = 0; i < t.size(); ++i) t.data()[i] = float(exact_value(i));
    return t;
  };
  write_tensor_file(dir.path("a.npy"), exact_tensor(1, 2, 5, 3), {2, 5, 3}, "float32");
  write_tensor_file(dir.path("b.npy"), exact_tensor(2, 3, 4, 5), {2, 3, 4, 5}, "float64");
  write_tensor_file(dir.path("c.safetensors"), exact_tensor(1, 1, 5, 3), {5, 3}, "float32", "o");
  write_tensor_file(dir.path("d.safetensors"), exact_tensor(2, 3, 4, 5), {2, 3, 4, 5}, "float64",
                    "o");
  const std::string script = dir.path("check.py");
  write_bytes(script, std::string(kPyValues) + R"(
out = sys.argv[1]
def check(name, a, shape, dtype):
    assert a.dtype == np.dtype(dtype), (name, a.dtype)
    assert a.shape == shape, (name, a.shape)
    assert np.array_equal(a, vals(shape, dtype)), name
def load_safetensors(path, name):
    with open(path, 'rb') as f:
        b = f.read()
    n = struct.unpack('<Q', b[:8])[0]
    assert n % 8 == 0, 'header not 8-byte aligned'
    info = json.loads(b[8:8 + n])[name]
    s, e = info['data_offsets']
    assert 8 + n + e == len(b), 'data does not end the file'
    dt = {'F32': '<f4', 'F64': '<f8'}[info['dtype']]
    return np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt).reshape(info['shape'])
check('a', np.load(out + '/a.npy'), (2, 5, 3), '<f4')
check('b', np.load(out + '/b.npy'), (2, 3, 4, 5), '<f8')
check('c', load_safetensors(out + '/c.safetensors', 'o'), (5, 3), '<f4')
check('d', load_safetensors(out + '/d.safetensors', 'o'), (2, 3, 4, 5), '<f8')
)");
  EXPECT_EQ(std::system((py + " " + script + " " + dir.dir().string()).c_str()), 0);
}

}  // namespace
}  // namespace attnbench
