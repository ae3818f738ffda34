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

void RequireFloat(const Storage& s, const char* what) {
  if (!IsFloating(s.dtype)) {
    ThrowTypeError(OpScope::CurrentOp() + ": expected " + what + " to be float32, bfloat16 or float16, got " + DTypeName(s.dtype));
  }
}

void RequireSameShape(const Storage& a, const Storage& b) {
  if (a.dims != b.dims) {
    ThrowRangeError(OpScope::CurrentOp() + ": shapes " + a.ShapeString() + " and " + b.ShapeString() + " differ");
  }
}

}  // namespace cr
