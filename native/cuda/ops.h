// Each file of the CUDA backend registers its N-API functions; addon.cc calls them all. The
// files mirror native/cpu's, op family by op family.
#pragma once

#include <napi.h>

namespace cr::cuda {

void RegisterBuffers(Napi::Env env, Napi::Object exports);
void RegisterConv2d(Napi::Env env, Napi::Object exports);
void RegisterBatchNorm(Napi::Env env, Napi::Object exports);
void RegisterElementwise(Napi::Env env, Napi::Object exports);
void RegisterPool2d(Napi::Env env, Napi::Object exports);
void RegisterLinear(Napi::Env env, Napi::Object exports);
void RegisterSoftmaxCrossEntropy(Napi::Env env, Napi::Object exports);
void RegisterSgd(Napi::Env env, Napi::Object exports);
// Test-only functions that run without a GPU (see host_checks.cc).
void RegisterHostChecks(Napi::Env env, Napi::Object exports);

}  // namespace cr::cuda
