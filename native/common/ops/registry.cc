#include "registry.h"

namespace cr::ops {

void RegisterAll(Napi::Env env, Napi::Object exports) {
  static const struct {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  } kEntries[] = {
      {"info", Info},
      {"memory", Memory},
      {"heapInUse", HeapInUse},
      {"setMemoryLimit", SetMemoryLimit},
      {"sync", Sync},
      {"syncBlocking", SyncBlocking},
      {"shutdown", Shutdown},
      {"startProfile", StartProfile},
      {"stopProfile", StopProfile},
      {"setNumThreads", SetNumThreads},
      {"setTf32", SetTf32},
      {"useDevice", UseDevice},
      {"emptyCache", EmptyCache},
      {"cachedBytes", CachedBytes},
      {"upload", Upload},
      {"fill", Fill},
      {"zerosLike", ZerosLike},
      {"download", Download},
      {"downloadSync", DownloadSync},
      {"reshape", Reshape},
      {"cast", Cast},
      {"release", Release},
      {"share", Share},
      {"shapeOf", ShapeOf},
      {"conv2dForward", Conv2dForward},
      {"conv2dBackwardData", Conv2dBackwardData},
      {"conv2dBackwardWeights", Conv2dBackwardWeights},
      {"batchNormForwardTraining", BatchNormForwardTraining},
      {"batchNormForwardInference", BatchNormForwardInference},
      {"batchNormBackward", BatchNormBackward},
      {"relu", Relu},
      {"reluBackward", ReluBackward},
      {"scale", Scale},
      {"add", Add},
      {"addRelu", AddRelu},
      {"maxPool2dForward", MaxPool2dForward},
      {"maxPool2dBackward", MaxPool2dBackward},
      {"avgPool2dForward", AvgPool2dForward},
      {"avgPool2dBackward", AvgPool2dBackward},
      {"linearForward", LinearForward},
      {"linearBackward", LinearBackward},
      {"softmaxCrossEntropyForward", SoftmaxCrossEntropyForward},
      {"softmaxCrossEntropyBackward", SoftmaxCrossEntropyBackward},
      {"countNonFinite", CountNonFinite},
      {"sgdStep", SgdStep},
      {"syncBatchNormStats", SyncBatchNormStats},
      {"syncBatchNormGather", SyncBatchNormGather},
      {"syncBatchNormBackwardReduce", SyncBatchNormBackwardReduce},
      {"syncBatchNormBackwardElemt", SyncBatchNormBackwardElemt},
      {"groupPrepare", GroupPrepare},
      {"groupConnect", GroupConnect},
      {"groupDestroy", GroupDestroy},
      {"groupAbort", GroupAbort},
      {"allReduce", AllReduce},
      {"broadcast", Broadcast},
      {"allGather", AllGather},
      {"barrier", Barrier},
      {"collectiveWait", CollectiveWait},
  };
  for (const auto& e : kEntries) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
}

}  // namespace cr::ops
