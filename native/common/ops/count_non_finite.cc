// The gradient scaler's check (lib/amp/grad-scaler.ts): whether a step's gradients overflowed.
#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "registry.h"

namespace cr::ops {

// countNonFinite(buffers) -> float32 [] buffer: how many of their values are infinite or NaN
Napi::Value CountNonFinite(const Napi::CallbackInfo& info) {
  return Entry(info, "countNonFinite", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    CountNonFiniteArgs a;
    a.tensors = TensorListArg(info, 0, "buffers");
    for (const StoragePtr& t : a.tensors) RequireFloat(*t, "every buffer");
    a.task = "countNonFinite (" + std::to_string(a.tensors.size()) + " buffers)";
    return WrapStorage(info.Env(), backend.CountNonFinite(a));
  });
}

}  // namespace cr::ops
