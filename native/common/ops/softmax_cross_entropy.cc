// Softmax cross-entropy's entry points: the mean over rows of logits [N, K] against int32 labels
// [N], with label smoothing (PyTorch's CrossEntropyLoss), and its gradient.
#include <tuple>

#include "../args.h"
#include "../checks.h"
#include "../context.h"
#include "registry.h"

namespace cr::ops {

namespace {

// Checks the float scores [N, K] (logits or probabilities, named `what`) and the int32 labels
// [N]; returns {N, K}.
std::pair<int64_t, int64_t> ReadScoresAndLabels(const Storage& scores, const char* what, const Storage& labels) {
  // The loss is float32 only: mixed precision computes it from float32 logits (lib/amp).
  RequireDType(scores, DType::kFloat32, what);
  RequireDType(labels, DType::kInt32, "labels");
  if (scores.dims.size() != 2 || labels.dims.size() != 1 || labels.dims[0] != scores.dims[0]) {
    ThrowRangeError(OpScope::CurrentOp() + ": expected " + what + " [N, K] and labels [N], got " + scores.ShapeString() +
                    " and " + labels.ShapeString());
  }
  return {scores.dims[0], scores.dims[1]};
}

double LabelSmoothingArg(const Napi::CallbackInfo& info, size_t i) {
  const double eps = NumberArg(info, i, "labelSmoothing");
  if (eps < 0 || eps >= 1) ThrowRangeError(OpScope::CurrentOp() + ": labelSmoothing must be in [0, 1), got " + FormatNumber(eps));
  return eps;
}

}  // namespace

// softmaxCrossEntropyForward(logits, labels, labelSmoothing) -> [loss, probs]
Napi::Value SoftmaxCrossEntropyForward(const Napi::CallbackInfo& info) {
  return Entry(info, "softmaxCrossEntropy", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Backend& backend = Ctx(env).backend();
    SoftmaxCrossEntropyForwardArgs a;
    a.logits = TensorArg(info, 0, "logits");
    a.labels = TensorArg(info, 1, "labels");
    std::tie(a.n, a.k) = ReadScoresAndLabels(*a.logits, "logits", *a.labels);
    a.smoothing = LabelSmoothingArg(info, 2);
    a.dtype = a.logits->dtype;
    a.task = Describe("softmaxCrossEntropy", {a.logits.get(), a.labels.get()});
    SoftmaxCrossEntropyOutputs out = backend.SoftmaxCrossEntropyForward(a);
    return Tuple(env, {WrapStorage(env, out.loss), WrapStorage(env, out.probs)});
  });
}

// softmaxCrossEntropyBackward(probs, labels, labelSmoothing, dloss) -> dlogits = (p - q) · dloss / N
Napi::Value SoftmaxCrossEntropyBackward(const Napi::CallbackInfo& info) {
  return Entry(info, "softmaxCrossEntropyBackward", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    SoftmaxCrossEntropyBackwardArgs a;
    a.probs = TensorArg(info, 0, "probabilities");
    a.labels = TensorArg(info, 1, "labels");
    std::tie(a.n, a.k) = ReadScoresAndLabels(*a.probs, "probabilities", *a.labels);
    a.smoothing = LabelSmoothingArg(info, 2);
    a.dloss = TensorArg(info, 3, "loss gradient");
    RequireDType(*a.dloss, DType::kFloat32, "loss gradient");
    if (!a.dloss->dims.empty()) {
      ThrowRangeError("softmaxCrossEntropyBackward: loss gradient must have shape [], got " + a.dloss->ShapeString());
    }
    a.dtype = a.probs->dtype;
    a.task = Describe("softmaxCrossEntropyBackward", {a.probs.get(), a.labels.get()});
    return WrapStorage(info.Env(), backend.SoftmaxCrossEntropyBackward(a));
  });
}

}  // namespace cr::ops
