#include "checks.h"

#include <cmath>
#include <cstdio>

namespace cr {

std::string FormatNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

BatchNormChecker::BatchNormChecker(Napi::Env env, const char* op, const Storage& x) : env_(env), op_(op), x_(x) {
  if (x.dims.size() != 4) Bad("expected a 4-D input");
  if (x.dtype != DType::kFloat32) Bad("expected a float32 input, got int32");
  c_ = x.dims[1];
}

void BatchNormChecker::Vector(const Storage& s, const char* what) const {
  if (s.dims != std::vector<int64_t>{c_} || s.dtype != DType::kFloat32) {
    Bad(std::string(what) + " must be float32 [" + std::to_string(c_) + "], got " + DTypeName(s.dtype) + " " +
        s.ShapeString());
  }
}

void BatchNormChecker::Gradient(const Storage& dy) const {
  if (dy.dims != x_.dims) Bad("gradient of shape " + dy.ShapeString() + " does not match the input");
  if (dy.dtype != DType::kFloat32) Bad("expected a float32 gradient, got int32");
}

void BatchNormChecker::Momentum(double momentum) const {
  if (!(momentum >= 0 && momentum <= 1)) Bad("momentum must be in [0, 1], got " + FormatNumber(momentum));
}

float BatchNormChecker::Eps(double eps) const {
  float f = static_cast<float>(eps);
  if (!(f > 0) || !std::isfinite(f)) Bad("eps must be positive and representable as float32, got " + FormatNumber(eps));
  return f;
}

void BatchNormChecker::Bad(const std::string& why) const {
  throw Napi::RangeError::New(env_, std::string(op_) + ": " + why + " (input " + x_.ShapeString() + ")");
}

}  // namespace cr
