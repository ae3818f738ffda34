// Argument checks used by several of the front end's entry points (native/common/ops/), with
// the same messages and error types on every backend. An op's own checks live in its file.
#pragma once

#include <string>

#include "storage.h"

namespace cr {

// "%g" of `v`, for error messages.
std::string FormatNumber(double v);

// Throws a TypeError unless `s` holds `dtype`: "<op>: expected <what> to be <dtype>, got <dtype>".
void RequireDType(const Storage& s, DType dtype, const char* what);
// Throws a TypeError unless `s` holds floating-point values, float32 or half precision (int32
// buffers are labels only).
void RequireFloat(const Storage& s, const char* what);
// Throws a RangeError unless `a` and `b` have the same shape.
void RequireSameShape(const Storage& a, const Storage& b);

}  // namespace cr
