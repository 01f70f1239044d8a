#pragma once
// One exception type for every failure SparseLoom reports. The message always says what was
// wrong and where (file, node, field), so a user can act on it without a debugger.
#include <stdexcept>
#include <string>
#include <string_view>

namespace sparseloom {

enum class ErrorCode {
  invalid_argument,  // a caller passed something unusable
  parse,             // malformed bytes in a file (ONNX, .npy, JSON)
  unsupported,       // a valid input we do not implement (op, attribute, dtype)
  shape,             // shapes that do not fit together
  io,                // a file could not be opened or read
  device,            // a backend/device failure (build, out of memory, lost)
  infeasible,        // e.g. an SLO or budget no plan can meet
  internal,          // a broken invariant: a bug in SparseLoom
};

constexpr std::string_view to_string(ErrorCode c) noexcept {
  switch (c) {
    case ErrorCode::invalid_argument: return "invalid argument";
    case ErrorCode::parse: return "parse error";
    case ErrorCode::unsupported: return "unsupported";
    case ErrorCode::shape: return "shape error";
    case ErrorCode::io: return "I/O error";
    case ErrorCode::device: return "device error";
    case ErrorCode::infeasible: return "infeasible";
    case ErrorCode::internal: return "internal error";
  }
  return "error";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string where, const std::string& message)
      : std::runtime_error(compose(code, where, message)), code_(code), where_(std::move(where)) {}

  ErrorCode code() const noexcept { return code_; }
  // The place the error refers to: "model.onnx: node 'conv1' (Conv): attribute 'pads'".
  const std::string& where() const noexcept { return where_; }

 private:
  static std::string compose(ErrorCode code, const std::string& where, const std::string& msg) {
    std::string s(to_string(code));
    if (!where.empty()) s += " in " + where;
    s += ": " + msg;
    return s;
  }
  ErrorCode code_;
  std::string where_;
};

// A block that could not be loaded (its file unreadable, its backend or device failing): the
// caller can fail over to another processor or variant; any other error is a bug or bad input.
constexpr bool is_load_failure(ErrorCode c) noexcept {
  return c == ErrorCode::device || c == ErrorCode::io || c == ErrorCode::parse;
}

// Throws Error(code, where, message) unless cond holds; `where` is built lazily by callers
// who need it, so the common path stays cheap.
inline void check(bool cond, ErrorCode code, std::string_view where, std::string_view message) {
  if (!cond) [[unlikely]]
    throw Error(code, std::string(where), std::string(message));
}

}  // namespace sparseloom
