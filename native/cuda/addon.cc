// Entry point of cudnn_resnet_cuda.node. Loading never fails for want of a GPU: info() then
// reports available: false and the reason, and every op throws it.
#include "cuda_context.h"
#include "ops.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* ctx = new cr::cuda::CudaContext();
  cr::InitCommon(env, exports, ctx);
  cr::cuda::RegisterBuffers(env, exports);
  cr::cuda::RegisterConv2d(env, exports);
  cr::cuda::RegisterBatchNorm(env, exports);
  cr::cuda::RegisterElementwise(env, exports);
  cr::cuda::RegisterPool2d(env, exports);
  cr::cuda::RegisterLinear(env, exports);
  cr::cuda::RegisterSoftmaxCrossEntropy(env, exports);
  cr::cuda::RegisterSgd(env, exports);
  cr::cuda::RegisterHostChecks(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(cudnn_resnet_cuda, Init)
