// SGD with momentum, Nesterov and weight decay over all parameters in one queued task and a
// few kernel launches (kernels/sgd.cu), for the same reason as on the CPU: hundreds of small
// parameters.
#include "cuda_context.h"
#include "ops.h"

namespace cr::cuda {

namespace {

std::vector<CudaStoragePtr> BufferList(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsArray()) {
    throw Napi::TypeError::New(env, OpScope::CurrentOp() + ": expected " + what + " to be an array of buffers");
  }
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<CudaStoragePtr> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) out.push_back(Arg(env, a.Get(k), what));
  return out;
}

// sgdStep(params, grads, momentumBuffers, lr, momentum, weightDecay, nesterov, firstStep)
Napi::Value Step(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "sgdStep", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    std::vector<CudaStoragePtr> params = BufferList(info, 0, "params");
    std::vector<CudaStoragePtr> grads = BufferList(info, 1, "grads");
    std::vector<CudaStoragePtr> bufs = BufferList(info, 2, "momentumBuffers");
    math::SgdHyper h;
    h.lr = float(NumberArg(info, 3, "lr"));
    h.momentum = float(NumberArg(info, 4, "momentum"));
    h.weight_decay = float(NumberArg(info, 5, "weightDecay"));
    h.nesterov = BoolArg(info, 6, "nesterov");
    h.first = BoolArg(info, 7, "firstStep");
    const bool use_bufs = h.momentum != 0;
    CheckSgdBuffers(env, params, grads, bufs, h.momentum);
    if (!use_bufs) bufs.assign(params.size(), nullptr);
    Enqueue(ctx, "sgdStep (" + std::to_string(params.size()) + " parameters)",
            [&ctx, params = std::move(params), grads = std::move(grads), bufs = std::move(bufs), h] {
              std::vector<kernels::SgdTensor> tensors(params.size());
              for (size_t i = 0; i < params.size(); ++i) {
                tensors[i] = {params[i]->F(), grads[i]->F(), bufs[i] ? bufs[i]->F() : nullptr, params[i]->Numel()};
              }
              CR_CUDA(kernels::SgdStep(tensors.data(), tensors.size(), h, ctx.device->stream));
            });
    return env.Undefined();
  });
}

}  // namespace

void RegisterSgd(Napi::Env env, Napi::Object exports) {
  exports.Set("sgdStep", Napi::Function::New(env, Step, "sgdStep"));
}

}  // namespace cr::cuda
