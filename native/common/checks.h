// Argument checks shared by the backends: the rules that do not depend on the library that runs
// the op, with the same messages and error types on every backend. Backend-specific limits
// (cuDNN's, oneDNN's layouts) stay in the backends, next to the library that imposes them.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "storage.h"

namespace cr {

// "%g" of `v`, for error messages.
std::string FormatNumber(double v);

// Batch normalization over a 4-D float32 input x with C = x.dims[1] channels: every failure is a
// RangeError "<op>: <why> (input <x's shape>)".
class BatchNormChecker {
 public:
  BatchNormChecker(Napi::Env env, const char* op, const Storage& x);

  // A float32 [C] vector (weight, bias, statistics).
  void Vector(const Storage& s, const char* what) const;
  // The output gradient: float32 and of x's shape.
  void Gradient(const Storage& dy) const;
  void Momentum(double momentum) const;
  // Epsilon as the float32 the backends normalize with; positive and finite.
  float Eps(double eps) const;

  [[noreturn]] void Bad(const std::string& why) const;

  int64_t channels() const { return c_; }

 private:
  Napi::Env env_;
  const char* op_;
  const Storage& x_;
  int64_t c_ = 0;
};

}  // namespace cr
