// Mean softmax cross-entropy with label smoothing (PyTorch's CrossEntropyLoss semantics) as
// CUDA kernels (kernels/softmax_cross_entropy.cu). A label outside [0, K) cannot be seen without
// waiting for the GPU, so the kernel records it and the next sync point rejects with it
// (ERR_LABEL_OUT_OF_RANGE, naming this op), as the CPU backend does.
#include "cuda_context.h"
#include "ops.h"

namespace cr::cuda {

namespace {

// softmaxCrossEntropyForward(logits, labels, labelSmoothing) -> [loss, probs]
Napi::Value Forward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "softmaxCrossEntropy", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr logits = Arg(env, info[0], "logits");
    CudaStoragePtr labels = Arg(env, info[1], "labels");
    auto [n, k] = ReadScoresAndLabels(env, *logits, "logits", *labels);
    double eps = LabelSmoothingArg(info, 2);
    CudaStoragePtr loss = Alloc(ctx, {});
    CudaStoragePtr probs = Alloc(ctx, logits->dims);
    Enqueue(ctx, Describe("softmaxCrossEntropy", {logits.get(), labels.get()}),
            [&ctx, logits, labels, loss, probs, n = n, k = k, eps] {
              CR_CUDA(kernels::SoftmaxXentForward(logits->F(), labels->I(), n, k, eps, probs->F(), loss->F(),
                                                  ctx.label_error, ctx.device->stream));
            });
    return Tuple(env, {WrapStorage(env, loss), WrapStorage(env, probs)});
  });
}

// softmaxCrossEntropyBackward(probs, labels, labelSmoothing, dloss) -> dlogits
Napi::Value Backward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "softmaxCrossEntropyBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr probs = Arg(env, info[0], "probabilities");
    CudaStoragePtr labels = Arg(env, info[1], "labels");
    auto [n, k] = ReadScoresAndLabels(env, *probs, "probabilities", *labels);
    double eps = LabelSmoothingArg(info, 2);
    CudaStoragePtr dloss = Arg(env, info[3], "loss gradient");
    CheckLossGradient(env, *dloss);
    CudaStoragePtr dx = Alloc(ctx, probs->dims);
    Enqueue(ctx, Describe("softmaxCrossEntropyBackward", {probs.get(), labels.get()}),
            [&ctx, probs, labels, dloss, dx, n = n, k = k, eps] {
              CR_CUDA(kernels::SoftmaxXentBackward(probs->F(), labels->I(), n, k, eps, dloss->F(), dx->F(),
                                                   ctx.label_error, ctx.device->stream));
            });
    return WrapStorage(env, dx);
  });
}

}  // namespace

void RegisterSoftmaxCrossEntropy(Napi::Env env, Napi::Object exports) {
  exports.Set("softmaxCrossEntropyForward", Napi::Function::New(env, Forward, "softmaxCrossEntropyForward"));
  exports.Set("softmaxCrossEntropyBackward", Napi::Function::New(env, Backward, "softmaxCrossEntropyBackward"));
}

}  // namespace cr::cuda
