#include "errors.h"

namespace cr {

namespace {
thread_local std::string current_op;
thread_local const char* current_backend = "native";
}  // namespace

OpScope::OpScope(const char* backend, std::string op)
    : prev_op_(std::move(current_op)), prev_backend_(current_backend) {
  current_op = std::move(op);
  current_backend = backend;
}

OpScope::~OpScope() {
  current_op = std::move(prev_op_);
  current_backend = prev_backend_;
}

const std::string& OpScope::CurrentOp() { return current_op; }
const char* OpScope::CurrentBackend() { return current_backend; }

void Fail(const std::string& code, const std::string& message) {
  throw NativeError(current_backend, current_op, code, current_op + ": " + message);
}

void ThrowTypeError(const std::string& message) { throw ArgumentError(ArgumentError::Kind::kType, message); }

void ThrowRangeError(const std::string& message) { throw ArgumentError(ArgumentError::Kind::kRange, message); }

Napi::Error ToJsError(Napi::Env env, const std::string& backend, const std::string& op,
                      const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  err.Set("op", Napi::String::New(env, op));
  err.Set("backend", Napi::String::New(env, backend));
  return err;
}

}  // namespace cr
