// Argument readers for the native surface, shared by every backend. The TypeScript layer
// validates first, so these only guarantee that no JS value can make native code misbehave.
#pragma once

#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "storage.h"

namespace cr {

int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name);
double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::vector<int64_t> IntsArg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t n);

// A shape of rank 0 to 5.
std::vector<int64_t> ShapeArg(const Napi::CallbackInfo& info, size_t i);
// 'float32', 'int32', 'bfloat16' or 'float16'.
DType DTypeArg(const Napi::CallbackInfo& info, size_t i);
// The value to fill a `dtype` buffer with: a finite number, and for int32 an integer in its range
// (converting anything else to int32 is undefined behaviour).
double FillValueArg(const Napi::CallbackInfo& info, size_t i, DType dtype);
// The element count of `dims`; a RangeError for a non-positive dimension or an absurd size.
int64_t CheckedNumel(const std::vector<int64_t>& dims);

// The storage of a buffer handle of this addon instance at argument `i` (see UnwrapStorage).
StoragePtr TensorArg(const Napi::CallbackInfo& info, size_t i, const char* what);
// Like TensorArg, but null and undefined give a null storage.
StoragePtr OptionalTensorArg(const Napi::CallbackInfo& info, size_t i, const char* what);
// An array of buffer handles.
std::vector<StoragePtr> TensorListArg(const Napi::CallbackInfo& info, size_t i, const char* what);

Napi::Array Tuple(Napi::Env env, std::initializer_list<Napi::Value> values);


}  // namespace cr
