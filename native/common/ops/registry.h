// The native surface: every N-API function an addon exports, written once for all backends.
// lib/backend/binding.ts describes the same list in TypeScript; test/native-surface.test.ts
// checks that both addons export exactly it.
#pragma once

#include <napi.h>

namespace cr::ops {

// Exports every entry point below under its JS name.
void RegisterAll(Napi::Env env, Napi::Object exports);

// runtime.cc
Napi::Value Info(const Napi::CallbackInfo& info);
Napi::Value Memory(const Napi::CallbackInfo& info);
Napi::Value HeapInUse(const Napi::CallbackInfo& info);
Napi::Value SetMemoryLimit(const Napi::CallbackInfo& info);
Napi::Value Sync(const Napi::CallbackInfo& info);
Napi::Value SyncBlocking(const Napi::CallbackInfo& info);
Napi::Value Shutdown(const Napi::CallbackInfo& info);
Napi::Value StartProfile(const Napi::CallbackInfo& info);
Napi::Value StopProfile(const Napi::CallbackInfo& info);
Napi::Value SetNumThreads(const Napi::CallbackInfo& info);
Napi::Value SetTf32(const Napi::CallbackInfo& info);
Napi::Value UseDevice(const Napi::CallbackInfo& info);
Napi::Value EmptyCache(const Napi::CallbackInfo& info);
Napi::Value CachedBytes(const Napi::CallbackInfo& info);

// buffers.cc
Napi::Value Upload(const Napi::CallbackInfo& info);
Napi::Value Fill(const Napi::CallbackInfo& info);
Napi::Value ZerosLike(const Napi::CallbackInfo& info);
Napi::Value Download(const Napi::CallbackInfo& info);
Napi::Value DownloadSync(const Napi::CallbackInfo& info);
Napi::Value Reshape(const Napi::CallbackInfo& info);
Napi::Value Cast(const Napi::CallbackInfo& info);
Napi::Value Release(const Napi::CallbackInfo& info);
Napi::Value Share(const Napi::CallbackInfo& info);
Napi::Value ShapeOf(const Napi::CallbackInfo& info);

// conv2d.cc
Napi::Value Conv2dForward(const Napi::CallbackInfo& info);
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info);
Napi::Value Conv2dBackwardWeights(const Napi::CallbackInfo& info);

// batch_norm.cc
Napi::Value BatchNormForwardTraining(const Napi::CallbackInfo& info);
Napi::Value BatchNormForwardInference(const Napi::CallbackInfo& info);
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info);

// elementwise.cc
Napi::Value Relu(const Napi::CallbackInfo& info);
Napi::Value ReluBackward(const Napi::CallbackInfo& info);
Napi::Value Scale(const Napi::CallbackInfo& info);
Napi::Value Add(const Napi::CallbackInfo& info);
Napi::Value AddRelu(const Napi::CallbackInfo& info);

// pool2d.cc
Napi::Value MaxPool2dForward(const Napi::CallbackInfo& info);
Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info);
Napi::Value AvgPool2dForward(const Napi::CallbackInfo& info);
Napi::Value AvgPool2dBackward(const Napi::CallbackInfo& info);

// linear.cc
Napi::Value LinearForward(const Napi::CallbackInfo& info);
Napi::Value LinearBackward(const Napi::CallbackInfo& info);

// softmax_cross_entropy.cc
Napi::Value SoftmaxCrossEntropyForward(const Napi::CallbackInfo& info);
Napi::Value SoftmaxCrossEntropyBackward(const Napi::CallbackInfo& info);

// count_non_finite.cc
Napi::Value CountNonFinite(const Napi::CallbackInfo& info);

// sgd.cc
Napi::Value SgdStep(const Napi::CallbackInfo& info);

// graph.cc
Napi::Value CaptureBegin(const Napi::CallbackInfo& info);
Napi::Value CaptureEnd(const Napi::CallbackInfo& info);
Napi::Value CaptureAbort(const Napi::CallbackInfo& info);
Napi::Value GraphLaunch(const Napi::CallbackInfo& info);
Napi::Value GraphRelease(const Napi::CallbackInfo& info);
Napi::Value GraphStatus(const Napi::CallbackInfo& info);
Napi::Value CopyInto(const Napi::CallbackInfo& info);
// sync_batch_norm.cc
Napi::Value SyncBatchNormStats(const Napi::CallbackInfo& info);
Napi::Value SyncBatchNormGather(const Napi::CallbackInfo& info);
Napi::Value SyncBatchNormBackwardReduce(const Napi::CallbackInfo& info);
Napi::Value SyncBatchNormBackwardElemt(const Napi::CallbackInfo& info);

// collectives.cc
Napi::Value GroupPrepare(const Napi::CallbackInfo& info);
Napi::Value GroupConnect(const Napi::CallbackInfo& info);
Napi::Value GroupDestroy(const Napi::CallbackInfo& info);
Napi::Value GroupAbort(const Napi::CallbackInfo& info);
Napi::Value AllReduce(const Napi::CallbackInfo& info);
Napi::Value Broadcast(const Napi::CallbackInfo& info);
Napi::Value AllGather(const Napi::CallbackInfo& info);
Napi::Value Barrier(const Napi::CallbackInfo& info);
Napi::Value CollectiveWait(const Napi::CallbackInfo& info);

}  // namespace cr::ops
