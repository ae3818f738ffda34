// Entry point of cudnn_resnet_cuda.node: the shared native surface over the cuDNN backend, and
// the host-side test hooks. Loading never fails for want of a GPU: info() then reports
// available: false and the reason, and every op throws it.
#include "cuda_backend.h"
#include "host_checks.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  cr::InitAddon(env, exports, "cuda", [](cr::Context& ctx) { return std::make_unique<cr::cuda::CudaBackend>(ctx); });
  cr::cuda::RegisterHostChecks(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(cudnn_resnet_cuda, Init)
