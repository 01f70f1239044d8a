#pragma once
// JSON helpers over nlohmann-json for every file SparseLoom reads (manifests, scenarios,
// profiles): parse errors carry file and line; field errors carry file and the field's path,
// and the field's line too when the document was loaded with its text (load_document).
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <type_traits>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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
  } catch (const nlohmann::json::exception& e) {  // e.g. 406: a number too large for a double
    throw Error(ErrorCode::parse, source, e.what());
  }
}

namespace detail {
template <class T>
struct is_vector : std::false_type {};
template <class U, class A>
struct is_vector<std::vector<U, A>> : std::true_type {};

// Whether j converts to T without an out-of-range float->integer cast (undefined behaviour in
// nlohmann's get<int>() of 1e300) or a negative value wrapping into an unsigned field
// (tests/fuzz/regressions/profile_table/schema-version-1e300.json).
template <class T>
bool representable(const Json& j) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (j.is_number_float()) {
      const double v = j.get<double>();
      return std::isfinite(v) && v >= static_cast<double>(std::numeric_limits<T>::min()) &&
             v < std::ldexp(1.0, std::numeric_limits<T>::digits);
    }
    if (j.is_number_unsigned())
      return j.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
    if (j.is_number_integer()) {
      const auto v = j.get<std::int64_t>();
      if constexpr (std::is_unsigned_v<T>)
        return v >= 0 && static_cast<std::uint64_t>(v) <= std::numeric_limits<T>::max();
      else
        return v >= std::numeric_limits<T>::min() && v <= std::numeric_limits<T>::max();
    }
  } else if constexpr (is_vector<T>::value) {
    if (j.is_array())
      for (const auto& e : j)
        if (!representable<typename T::value_type>(e)) return false;
  }
  return true;  // other mismatches are nlohmann type errors, reported by get()
}
}  // namespace detail

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p);
  check(f.good(), ErrorCode::io, p.string(), "cannot open for reading");
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline Json load(const std::filesystem::path& p) { return parse(read_text(p), p.string()); }

// Writes `text` to a temporary beside `p`, then renames it over `p`: a concurrent reader sees
// the old file or the new one, never half of one. The temporary's name is unique per call, so
// writers racing on one file (two runs sharing a cache) never mix bytes; the last rename wins.
inline void write_text_atomically(const std::filesystem::path& p, const std::string& text) {
  static std::atomic<std::uint64_t> calls{0};
  const std::filesystem::path tmp = p.string() + ".tmp" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) +
                                    "-" + std::to_string(calls.fetch_add(1));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    check(f.good(), ErrorCode::io, tmp.string(), "cannot open for writing");
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.flush();
    if (!f.good()) {
      f.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw Error(ErrorCode::io, tmp.string(), "write failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, p, ec);
  if (ec) {
    std::error_code ignore;
    std::filesystem::remove(tmp, ignore);
    throw Error(ErrorCode::io, p.string(), "cannot replace: " + ec.message());
  }
}

// One step of a field path: an object key or an array index.
struct PathStep {
  std::string key;
  std::size_t index = 0;
  bool is_index = false;
};

namespace detail {

// A scanner over text nlohmann already accepted: it only walks structure to find where a
// path lies (nlohmann 3.11 keeps no positions). Bounded: every loop advances or stops.
struct Scan {
  std::string_view t;
  std::size_t i = 0;
  bool ok() const { return i < t.size(); }
  void ws() {
    while (ok() && (t[i] == ' ' || t[i] == '\n' || t[i] == '\r' || t[i] == '\t')) ++i;
  }
  // At a '"': returns the raw string body and moves past the closing quote.
  std::string_view string() {
    const std::size_t b = ++i;
    while (ok() && t[i] != '"') i += t[i] == '\\' ? 2 : 1;
    const std::string_view body = t.substr(b, std::min(i, t.size()) - b);
    ++i;
    return body;
  }
  void value() {
    ws();
    if (!ok()) return;
    if (t[i] == '"') { string(); return; }
    if (t[i] != '{' && t[i] != '[') {
      while (ok() && t[i] != ',' && t[i] != '}' && t[i] != ']' && t[i] != ' ' && t[i] != '\n' && t[i] != '\r' && t[i] != '\t') ++i;
      return;
    }
    int depth = 0;
    while (ok()) {
      const char c = t[i];
      if (c == '"') { string(); continue; }
      depth += (c == '{' || c == '[') - (c == '}' || c == ']');
      ++i;
      if (depth == 0) return;
    }
  }
  // Inside an object/array (just after '{' / '['): moves to the wanted member's value; returns
  // the position of its key (objects) or value (arrays), npos when absent.
  std::size_t member(const PathStep& s) {
    ++i;
    for (std::size_t k = 0;; ++k) {
      ws();
      if (!ok() || t[i] == '}' || t[i] == ']') return std::string_view::npos;
      std::size_t at = i;
      bool hit = s.is_index && k == s.index;
      if (!s.is_index) {
        if (t[i] != '"') return std::string_view::npos;
        hit = string() == s.key;
        ws();
        if (!ok() || t[i] != ':') return std::string_view::npos;
        ++i;
      }
      ws();
      if (hit) return at;
      value();
      ws();
      if (ok() && t[i] == ',') ++i;
    }
  }
};

}  // namespace detail

// 1-based line of the field at `path` in JSON `text` (of its key for object members), 0 when
// the path is not there.
inline std::size_t line_of(std::string_view text, const std::vector<PathStep>& path) {
  detail::Scan sc{text};
  sc.ws();
  std::size_t at = sc.i;
  for (const auto& step : path) {
    sc.ws();
    if (!sc.ok() || sc.t[sc.i] != (step.is_index ? '[' : '{')) return 0;
    at = sc.member(step);
    if (at == std::string_view::npos) return 0;
  }
  if (at > text.size()) return 0;
  std::size_t line = 1;
  for (std::size_t k = 0; k < at; ++k) line += text[k] == '\n';
  return line;
}

// A view on one object of a document that remembers where it is, so every error names the
// file, the line (when the text is known) and the field path
// ("scenario.json:12: tasks[1].deadline_ms").
class Field {
 public:
  Field(const Json& j, std::string source, std::string path = "") : j_(&j), source_(std::move(source)), path_(std::move(path)) {}
  // With the document's text, where() also names the line.
  Field(const Json& j, std::string source, std::shared_ptr<const std::string> text)
      : j_(&j), source_(std::move(source)), text_(std::move(text)) {}

  const Json& raw() const { return *j_; }
  std::string where() const { return located(steps_, path_); }
  // A member: its key's line when present, else the line of this object.
  std::string where(const std::string& key) const {
    auto steps = steps_;
    steps.push_back({key, 0, false});
    const std::string path = path_.empty() ? key : path_ + "." + key;
    return text_ && line_of(*text_, steps) == 0 ? with_line(line_of(*text_, steps_), path) : located(steps, path);
  }

  bool has(const std::string& key) const { return j_->is_object() && j_->contains(key) && !(*j_)[key].is_null(); }

  // Locations are built only on failure: where() scans the text.
  Field operator[](const std::string& key) const {
    if (!j_->is_object()) throw Error(ErrorCode::parse, where(), "expected an object");
    if (!j_->contains(key)) throw Error(ErrorCode::parse, where(key), "missing required field");
    return child((*j_)[key], {key, 0, false}, path_.empty() ? key : path_ + "." + key);
  }
  Field operator[](std::size_t i) const {
    if (!j_->is_array() || i >= j_->size()) throw Error(ErrorCode::parse, where(), "index out of range");
    return child((*j_)[i], {"", i, true}, path_ + "[" + std::to_string(i) + "]");
  }
  std::size_t size() const {
    if (!j_->is_array()) throw Error(ErrorCode::parse, where(), "expected an array");
    return j_->size();
  }

  template <class T>
  T get() const {
    if (!detail::representable<T>(*j_)) throw Error(ErrorCode::parse, where(), "number out of range for this field");
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
    if (!(v >= lo && v <= hi))
      throw Error(ErrorCode::parse, where(key),
                  "value " + std::to_string(v) + " outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
  }

 private:
  Field child(const Json& j, PathStep step, std::string path) const {
    Field f(j, source_, std::move(path));
    f.text_ = text_;
    if (text_) {
      f.steps_ = steps_;
      f.steps_.push_back(std::move(step));
    }
    return f;
  }
  std::string with_line(std::size_t line, const std::string& path) const {
    return source_ + (line ? ":" + std::to_string(line) : "") + (path.empty() ? "" : ": " + path);
  }
  std::string located(const std::vector<PathStep>& steps, const std::string& path) const {
    return with_line(text_ ? line_of(*text_, steps) : 0, path);
  }

  const Json* j_;
  std::string source_, path_;
  std::shared_ptr<const std::string> text_;  // the document's text, for lines; may be null
  std::vector<PathStep> steps_;              // path_ as steps (kept only with text_)
};

// A parsed document that keeps its text, so its Fields report lines.
struct Document {
  Json json;
  std::string source;
  std::shared_ptr<const std::string> text;
  Field root() const { return Field(json, source, text); }
};

inline Document parse_document(std::string text, const std::string& source) {
  auto shared = std::make_shared<const std::string>(std::move(text));
  return {parse(*shared, source), source, shared};
}

inline Document load_document(const std::filesystem::path& p) { return parse_document(read_text(p), p.string()); }

// Every file format carries schema_version; an unknown one is a clear error.
inline void check_schema(const Field& root, int supported) {
  const int v = root.get<int>("schema_version");
  check(v == supported, ErrorCode::unsupported, root.where("schema_version"),
        "version " + std::to_string(v) + " (this SparseLoom reads version " + std::to_string(supported) + ")");
}

}  // namespace sparseloom::json
