// Errors raised by native code and their conversion into JavaScript errors.
//
// Native code never calls exit() or abort(): every library status is turned into a
// NativeError (op, backend, library code, message) and thrown; the one catch at the N-API
// boundary (Guard) turns it into a JS Error with .code, .op and .backend. Errors raised while
// the worker thread executes queued work are recorded by the Queue and delivered at the next
// sync point instead.
#pragma once

#include <napi.h>

#include <stdexcept>
#include <string>

namespace cr {

class NativeError : public std::runtime_error {
 public:
  NativeError(std::string backend, std::string op, std::string code, const std::string& message)
      : std::runtime_error(message), backend(std::move(backend)), op(std::move(op)), code(std::move(code)) {}
  std::string backend;
  std::string op;
  std::string code;
};

// The op being enqueued or executed on this thread, so that library-status macros deep inside
// an op can name it without threading it through every call.
class OpScope {
 public:
  OpScope(const char* backend, std::string op);
  ~OpScope();
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;
  static const std::string& CurrentOp();
  static const char* CurrentBackend();

 private:
  std::string prev_op_;
  const char* prev_backend_;
};

// Throws a NativeError for the current op.
[[noreturn]] void Fail(const std::string& code, const std::string& message);

// A bad argument, found by a check that needs no JS value: the shared checks of the front end and
// the limits a backend's library imposes. Thrown on the JS thread before anything is enqueued;
// Guard turns it into a JS TypeError or RangeError with this message.
class ArgumentError : public std::runtime_error {
 public:
  enum class Kind { kType, kRange };
  ArgumentError(Kind kind, const std::string& message) : std::runtime_error(message), kind(kind) {}
  const Kind kind;
};

[[noreturn]] void ThrowTypeError(const std::string& message);
[[noreturn]] void ThrowRangeError(const std::string& message);

Napi::Error ToJsError(Napi::Env env, const std::string& backend, const std::string& op,
                      const std::string& code, const std::string& message);

// Runs the body of an N-API entry point and converts any C++ exception into a JS exception.
template <typename F>
Napi::Value Guard(const Napi::CallbackInfo& info, const char* backend, const char* op, F&& body) {
  Napi::Env env = info.Env();
  OpScope scope(backend, op);
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const ArgumentError& e) {
    if (e.kind == ArgumentError::Kind::kType) throw Napi::TypeError::New(env, e.what());
    throw Napi::RangeError::New(env, e.what());
  } catch (const NativeError& e) {
    throw ToJsError(env, e.backend, e.op, e.code, e.what());
  } catch (const std::bad_alloc&) {
    throw ToJsError(env, backend, op, "ERR_OUT_OF_MEMORY", std::string(op) + ": out of host memory");
  } catch (const std::exception& e) {
    throw ToJsError(env, backend, op, "ERR_NATIVE", std::string(op) + ": " + e.what());
  }
}

}  // namespace cr
