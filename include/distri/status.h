// Status and Result<T>: the one error type used across Distri.
//
// Bad input and I/O failures are returned, never thrown. A Status is cheap in
// the common case (ok: one pointer-sized null); an error carries a code and a
// message. The code decides the wire error prefix (see docs/protocol.md), so
// the Python client can map it to an exception class.
//
// Thread-safety: a Status is a value; distinct objects may be used from
// distinct threads without synchronisation.

#ifndef DISTRI_STATUS_H_
#define DISTRI_STATUS_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace distri {

enum class Code : unsigned char {
  kOk = 0,
  kInvalidArgument,  // bad request from a client: "ERR ..."
  kNotFound,
  kWrongType,         // "WRONGTYPE ..."
  kOutOfMemory,       // "OOM ..."
  kIOError,
  kCorruption,
  kNoAuth,            // "NOAUTH ..."
  kPermissionDenied,  // "NOPERM ..."
  kBusy,
  kUnknown,  // the outcome is not known (a write that may or may not have applied)
  kInternal,
};

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(Code code, std::string_view message)
      : rep_(code == Code::kOk ? nullptr : std::make_shared<Rep>(Rep{code, std::string(message)})) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string_view m) { return Status(Code::kInvalidArgument, m); }
  static Status NotFound(std::string_view m) { return Status(Code::kNotFound, m); }
  static Status WrongType(std::string_view m) { return Status(Code::kWrongType, m); }
  static Status OutOfMemory(std::string_view m) { return Status(Code::kOutOfMemory, m); }
  static Status IOError(std::string_view m) { return Status(Code::kIOError, m); }
  static Status Corruption(std::string_view m) { return Status(Code::kCorruption, m); }
  static Status Unknown(std::string_view m) { return Status(Code::kUnknown, m); }
  static Status Internal(std::string_view m) { return Status(Code::kInternal, m); }

  bool ok() const { return rep_ == nullptr; }
  Code code() const { return rep_ ? rep_->code : Code::kOk; }
  const std::string& message() const {
    static const std::string kEmpty;
    return rep_ ? rep_->message : kEmpty;
  }
  // "IO error: disk full" style, for logs.
  std::string ToString() const;

 private:
  struct Rep {
    Code code;
    std::string message;
  };
  std::shared_ptr<const Rep> rep_;
};

// Result<T> holds either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}             // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}      // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace distri

// Returns early from the calling function when expr yields a non-ok Status.
#define DISTRI_RETURN_IF_ERROR(expr)        \
  do {                                      \
    ::distri::Status _st = (expr);          \
    if (!_st.ok()) return _st;              \
  } while (0)

#endif  // DISTRI_STATUS_H_
