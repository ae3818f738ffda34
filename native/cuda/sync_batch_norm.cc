// Synchronized batch normalization's local parts on CUDA: not written yet. They need four small
// kernels (per-channel sums in two passes, Chan's combination, the backward's sums and its
// element-wise part) that cannot be run or measured on the machines this library is built on;
// until they are, SyncBatchNorm trains on the CPU backend and every entry point here refuses with
// ERR_UNSUPPORTED, which lib/ops/sync-batch-norm.ts reaches before any collective.
#include "cuda_backend.h"

namespace cr::cuda {

namespace {

[[noreturn]] void Refuse() {
  Fail("ERR_UNSUPPORTED",
       "synchronized batch norm (nn.convertSyncBatchNorm) is not implemented on the cuda backend yet; "
       "train with per-rank batch statistics (plain nn.BatchNorm2d, as PyTorch's DDP does) or on the cpu backend");
}

}  // namespace

StoragePtr CudaBackend::SyncBatchNormStats(const SyncBatchNormStatsArgs&) { Refuse(); }
SyncBatchNormGathered CudaBackend::SyncBatchNormGather(const SyncBatchNormGatherArgs&) { Refuse(); }
SyncBatchNormSums CudaBackend::SyncBatchNormBackwardReduce(const SyncBatchNormBackwardReduceArgs&) { Refuse(); }
StoragePtr CudaBackend::SyncBatchNormBackwardElemt(const SyncBatchNormBackwardElemtArgs&) { Refuse(); }

}  // namespace cr::cuda
