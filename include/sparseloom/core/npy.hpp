#pragma once
// Reader and writer for NumPy .npy files (versions 1-3, little-endian, C order), the on-disk
// tensor format of the zoo's test and calibration data. The reader bounds every read and
// rejects anything it does not understand with an Error; it is fuzzed.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "sparseloom/core/error.hpp"
#include "sparseloom/core/tensor.hpp"

namespace sparseloom::npy {

namespace detail {

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == ',')) s.remove_suffix(1);
  return s;
}

// The value text after 'key': in the header dict, up to the next top-level comma or brace.
inline std::string_view dict_value(std::string_view h, std::string_view key, const std::string& where) {
  const std::string k1 = "'" + std::string(key) + "'";
  auto pos = h.find(k1);
  check(pos != std::string_view::npos, ErrorCode::parse, where, "header has no " + k1);
  pos = h.find(':', pos + k1.size());
  check(pos != std::string_view::npos, ErrorCode::parse, where, "no ':' after " + k1);
  std::size_t end = pos + 1;
  int depth = 0;
  for (; end < h.size(); ++end) {
    const char c = h[end];
    if (c == '(') ++depth;
    else if (c == ')') { if (--depth < 0) break; }
    else if ((c == ',' || c == '}') && depth == 0) break;
  }
  check(depth <= 0, ErrorCode::parse, where, "unbalanced parentheses in header");
  return trim(h.substr(pos + 1, end - pos - 1 + (depth < 0 ? 1 : 0)));
}

inline DType parse_descr(std::string_view d, const std::string& where) {
  check(d.size() >= 2 && (d.front() == '\'' || d.front() == '"') && d.back() == d.front(), ErrorCode::parse, where, "descr is not a string");
  d = d.substr(1, d.size() - 2);
  if (d == "<f4") return DType::f32;
  if (d == "|u1" || d == "<u1") return DType::u8;
  if (d == "|i1" || d == "<i1") return DType::i8;
  if (d == "<i2") return DType::i16;
  if (d == "<i4") return DType::i32;
  if (d == "<i8") return DType::i64;
  throw Error(ErrorCode::unsupported, where, "dtype '" + std::string(d) + "' (supported: <f4, u1, i1, <i2, <i4, <i8)");
}

inline Shape parse_shape(std::string_view s, const std::string& where) {
  check(s.size() >= 2 && s.front() == '(' && s.back() == ')', ErrorCode::parse, where, "shape is not a tuple");
  s = s.substr(1, s.size() - 2);
  Shape shape;
  while (true) {
    s = trim(s);
    while (!s.empty() && (s.front() == ',' || s.front() == ' ')) s.remove_prefix(1);
    if (s.empty()) break;
    std::int64_t v = 0;
    std::size_t i = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
      check(v < (std::int64_t{1} << 40), ErrorCode::parse, where, "dimension too large");
      v = v * 10 + (s[i] - '0');
    }
    check(i > 0, ErrorCode::parse, where, "bad dimension in shape");
    check(shape.size() < 16, ErrorCode::parse, where, "more than 16 dimensions");
    shape.push_back(v);
    s.remove_prefix(i);
  }
  return shape;
}

}  // namespace detail

// Parses .npy bytes; `source` names them in errors.
inline Tensor parse(std::string_view bytes, const std::string& source) {
  check(bytes.size() >= 10 && bytes.substr(0, 6) == std::string_view("\x93NUMPY", 6), ErrorCode::parse, source,
        "not a .npy file (bad magic)");
  const auto major = static_cast<unsigned char>(bytes[6]);
  check(major >= 1 && major <= 3, ErrorCode::unsupported, source, ".npy version " + std::to_string(major));
  std::size_t header_len = 0, pos = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    pos = 10;
  } else {
    check(bytes.size() >= 12, ErrorCode::parse, source, "truncated header");
    for (int i = 0; i < 4; ++i) header_len |= static_cast<std::size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    pos = 12;
  }
  check(header_len <= bytes.size() - pos, ErrorCode::parse, source, "truncated header");
  const std::string_view h = bytes.substr(pos, header_len);
  const std::string where = source + ": header";
  const DType dt = detail::parse_descr(detail::dict_value(h, "descr", where), where);
  const auto fo = detail::dict_value(h, "fortran_order", where);
  check(fo == "False", ErrorCode::unsupported, where, "fortran_order arrays (save with C order)");
  const Shape shape = detail::parse_shape(detail::dict_value(h, "shape", where), where);
  const auto n = numel_of(shape, where);
  const std::size_t data = pos + header_len;
  const std::size_t need = static_cast<std::size_t>(n) * size_of(dt);
  check(bytes.size() - data >= need, ErrorCode::parse, source,
        "data is truncated: " + std::to_string(bytes.size() - data) + " bytes for " + to_string(shape) + " of " +
            std::string(to_string(dt)));
  Tensor t = Tensor::empty(shape, dt);
  if (need) std::memcpy(t.raw(), bytes.data() + data, need);
  return t;
}

inline Tensor load(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  check(f.good(), ErrorCode::io, path.string(), "cannot open for reading");
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return parse(bytes, path.string());
}

inline void save(const std::filesystem::path& path, const Tensor& t_in) {
  const Tensor t = t_in.contiguous();
  std::string descr;
  switch (t.dtype()) {
    case DType::f32: descr = "<f4"; break;
    case DType::u8: descr = "|u1"; break;
    case DType::i8: descr = "|i1"; break;
    case DType::i16: descr = "<i2"; break;
    case DType::i32: descr = "<i4"; break;
    case DType::i64: descr = "<i8"; break;
  }
  std::string shape = "(";
  for (auto d : t.shape()) shape += std::to_string(d) + ",";
  if (t.rank() > 1) shape.pop_back();
  shape += ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  check(f.good(), ErrorCode::io, path.string(), "cannot open for writing");
  const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  f.write(magic, 8);
  const char len[2] = {static_cast<char>(header.size() & 0xff), static_cast<char>(header.size() >> 8)};
  f.write(len, 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
  check(f.good(), ErrorCode::io, path.string(), "write failed");
}

}  // namespace sparseloom::npy
