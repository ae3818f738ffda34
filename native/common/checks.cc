#include "checks.h"

#include <cstdio>

#include "errors.h"

namespace cr {

std::string FormatNumber(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void RequireDType(const Storage& s, DType dtype, const char* what) {
  if (s.dtype != dtype) {
    ThrowTypeError(OpScope::CurrentOp() + ": expected " + what + " to be " + DTypeName(dtype) + ", got " + DTypeName(s.dtype));
  }
}

void RequireFloat(const Storage& s, const char* what) { RequireDType(s, DType::kFloat32, what); }

void RequireSameShape(const Storage& a, const Storage& b) {
  if (a.dims != b.dims) {
    ThrowRangeError(OpScope::CurrentOp() + ": shapes " + a.ShapeString() + " and " + b.ShapeString() + " differ");
  }
}

}  // namespace cr
