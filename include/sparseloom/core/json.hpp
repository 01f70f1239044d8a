#pragma once
// JSON helpers over nlohmann-json for every file SparseLoom reads (manifests, scenarios,
// profiles): parse errors carry file and line; field errors carry file and the field's path.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "sparseloom/core/error.hpp"

namespace sparseloom::json {

using Json = nlohmann::json;

inline Json parse(const std::string& text, const std::string& source) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::size_t line = 1;
    for (std::size_t i = 0; i < e.byte && i < text.size(); ++i) line += text[i] == '\n';
    throw Error(ErrorCode::parse, source + ":" + std::to_string(line), e.what());
  }
}

inline Json load(const std::filesystem::path& p) {
  std::ifstream f(p);
  check(f.good(), ErrorCode::io, p.string(), "cannot open for reading");
  return parse(std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()), p.string());
}

// A view on one object of a document that remembers where it is, so every error names the
// file and the field path ("manifest.json: variants[3].accuracy_pct").
class Field {
 public:
  Field(const Json& j, std::string source, std::string path = "") : j_(&j), source_(std::move(source)), path_(std::move(path)) {}

  const Json& raw() const { return *j_; }
  std::string where() const { return source_ + (path_.empty() ? "" : ": " + path_); }
  std::string where(const std::string& key) const { return source_ + ": " + (path_.empty() ? key : path_ + "." + key); }

  bool has(const std::string& key) const { return j_->is_object() && j_->contains(key) && !(*j_)[key].is_null(); }

  Field operator[](const std::string& key) const {
    check(j_->is_object(), ErrorCode::parse, where(), "expected an object");
    check(j_->contains(key), ErrorCode::parse, where(key), "missing required field");
    return Field((*j_)[key], source_, path_.empty() ? key : path_ + "." + key);
  }
  Field operator[](std::size_t i) const {
    check(j_->is_array() && i < j_->size(), ErrorCode::parse, where(), "index out of range");
    return Field((*j_)[i], source_, path_ + "[" + std::to_string(i) + "]");
  }
  std::size_t size() const {
    check(j_->is_array(), ErrorCode::parse, where(), "expected an array");
    return j_->size();
  }

  template <class T>
  T get() const {
    try {
      return j_->get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorCode::parse, where(), std::string("wrong type: ") + e.what());
    }
  }
  template <class T>
  T get(const std::string& key) const { return (*this)[key].get<T>(); }
  template <class T>
  T get_or(const std::string& key, T fallback) const { return has(key) ? (*this)[key].get<T>() : fallback; }

  // A number that must lie in [lo, hi].
  double number(const std::string& key, double lo, double hi) const {
    const double v = get<double>(key);
    check(v >= lo && v <= hi, ErrorCode::parse, where(key),
          "value " + std::to_string(v) + " outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
  }

 private:
  const Json* j_;
  std::string source_, path_;
};

// Every file format carries schema_version; an unknown one is a clear error.
inline void check_schema(const Field& root, int supported) {
  const int v = root.get<int>("schema_version");
  check(v == supported, ErrorCode::unsupported, root.where("schema_version"),
        "version " + std::to_string(v) + " (this SparseLoom reads version " + std::to_string(supported) + ")");
}

}  // namespace sparseloom::json
