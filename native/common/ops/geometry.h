// The geometry of a convolution and of a pooling as the front end reads and checks it, output
// shape included: shared by the entry points and by the CUDA addon's host-side checks, which
// build cuDNN's plans from exactly what an op would.
#pragma once

#include <napi.h>

#include "../op_args.h"

namespace cr::ops {

// Stride, padding, dilation and groups from argument `i` on, checked with the input and weight
// dims; a RangeError names what is wrong.
Conv2dGeometry ReadConv2dGeometry(const Napi::CallbackInfo& info, size_t i, const Dims& x, const Dims& w);

// Kernel, stride and padding from argument `i` on, checked with the input dims (PyTorch's
// floor-mode output).
PoolGeometry ReadPoolGeometry(const Napi::CallbackInfo& info, size_t i, const Dims& x);

}  // namespace cr::ops
