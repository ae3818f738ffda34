// The optimizer's entry point: one SGD step over every parameter.
#include <unordered_set>

#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "registry.h"

namespace cr::ops {

namespace {

// As many grads as params, one momentum buffer per param when momentum is not 0 and none
// otherwise, all float32 and of their param's shape, no param twice.
void CheckBuffers(const SgdArgs& a) {
  const bool use_bufs = a.h.momentum != 0;
  auto bad = [](const std::string& why) { ThrowRangeError("sgdStep: " + why); };
  if (a.grads.size() != a.params.size()) {
    bad(std::to_string(a.params.size()) + " params but " + std::to_string(a.grads.size()) + " grads");
  }
  if (a.bufs.size() != (use_bufs ? a.params.size() : 0)) {
    bad(std::to_string(a.bufs.size()) + " momentum buffers for " + std::to_string(a.params.size()) + " params and momentum " +
        FormatNumber(a.h.momentum));
  }
  std::unordered_set<const Storage*> seen;
  for (size_t i = 0; i < a.params.size(); ++i) {
    const Storage* triple[] = {a.params[i].get(), a.grads[i].get(), use_bufs ? a.bufs[i].get() : nullptr};
    for (const Storage* s : triple) {
      if (s && s->dtype != DType::kFloat32) {
        ThrowTypeError("sgdStep: parameter " + std::to_string(i) + " has an " + DTypeName(s->dtype) +
                       " parameter, gradient or buffer; all must be float32");
      }
      if (s && s->dims != a.params[i]->dims) {
        bad("parameter " + std::to_string(i) + " has shape " + a.params[i]->ShapeString() +
            " but a gradient or buffer of shape " + s->ShapeString());
      }
    }
    if (!seen.insert(a.params[i].get()).second) bad("parameter " + std::to_string(i) + " appears twice");
  }
}

}  // namespace

// sgdStep(params, grads, momentumBuffers, lr, momentum, weightDecay, nesterov, firstStep, lrBuffer?)
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  return Entry(info, "sgdStep", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    SgdArgs a;
    a.params = TensorListArg(info, 0, "params");
    a.grads = TensorListArg(info, 1, "grads");
    a.bufs = TensorListArg(info, 2, "momentumBuffers");
    a.h.lr = float(NumberArg(info, 3, "lr"));
    a.h.momentum = float(NumberArg(info, 4, "momentum"));
    a.h.weight_decay = float(NumberArg(info, 5, "weightDecay"));
    a.h.nesterov = BoolArg(info, 6, "nesterov");
    a.h.first = BoolArg(info, 7, "firstStep");
    a.lr = OptionalTensorArg(info, 8, "lrBuffer");
    if (a.lr && (a.lr->dtype != DType::kFloat32 || a.lr->Numel() != 1)) {
      ThrowRangeError("sgdStep: expected lrBuffer to be a float32 buffer of one value, got " + std::string(DTypeName(a.lr->dtype)) +
                      " " + a.lr->ShapeString());
    }
    CheckBuffers(a);
    a.task = "sgdStep (" + std::to_string(a.params.size()) + " parameters)";
    backend.SgdStep(a);
    return info.Env().Undefined();
  });
}

}  // namespace cr::ops
