// Entry point of cudnn_resnet_cpu.node.
#include "cpu_context.h"
#include "ops.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* ctx = new cr::cpu::CpuContext();
  cr::InitCommon(env, exports, ctx);
  cr::cpu::RegisterBuffers(env, exports);
  cr::cpu::RegisterConv2d(env, exports);
  cr::cpu::RegisterBatchNorm(env, exports);
  cr::cpu::RegisterElementwise(env, exports);
  cr::cpu::RegisterPool2d(env, exports);
  cr::cpu::RegisterLinear(env, exports);
  cr::cpu::RegisterSoftmaxCrossEntropy(env, exports);
  cr::cpu::RegisterSgd(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(cudnn_resnet_cpu, Init)
