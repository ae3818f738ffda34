// Entry point of cudnn_resnet_cpu.node: the shared native surface over the oneDNN backend.
#include "cpu_backend.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  cr::InitAddon(env, exports, "cpu", [](cr::Context& ctx) { return std::make_unique<cr::cpu::CpuBackend>(ctx); });
  return exports;
}

}  // namespace

NODE_API_MODULE(cudnn_resnet_cpu, Init)
