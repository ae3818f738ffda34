// Each file of the CPU backend registers its N-API functions; addon.cc calls them all.
#pragma once

#include <napi.h>

namespace cr::cpu {

void RegisterBuffers(Napi::Env env, Napi::Object exports);
void RegisterConv2d(Napi::Env env, Napi::Object exports);
void RegisterBatchNorm(Napi::Env env, Napi::Object exports);
void RegisterElementwise(Napi::Env env, Napi::Object exports);
void RegisterPool2d(Napi::Env env, Napi::Object exports);
void RegisterLinear(Napi::Env env, Napi::Object exports);
void RegisterSoftmaxCrossEntropy(Napi::Env env, Napi::Object exports);
void RegisterSgd(Napi::Env env, Napi::Object exports);

}  // namespace cr::cpu
