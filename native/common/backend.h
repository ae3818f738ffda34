// The interface every backend implements: native/cpu (oneDNN) and native/cuda (cuDNN), each in
// files named like the front end's (conv2d.cc, batch_norm.cc, ...). Modelled on flashlight's
// AutogradExtension: one C++ interface, explicit forward and backward entry points per op.
//
// The front end (native/common/ops/) reads the JS arguments, checks everything that does not
// depend on the library, and calls these methods on the JS thread with plain argument structs
// (op_args.h). A method refuses what its library cannot do with an ArgumentError (errors.h),
// allocates the outputs (shapes are known at enqueue time, so the returned buffers can feed the
// next op at once), enqueues the work on the context's queue, and returns. Storages passed in
// were made by this backend (the front end only accepts this addon instance's handles), so a
// backend may downcast them to its own storage type.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "op_args.h"
#include "storage.h"

namespace cr {

class Context;

// The part of a sync point that waits for asynchronous work: returned by the worker's part (which
// launched that work) and run off the worker, on the context's completion thread
// (completions.h); it throws what the work failed with. Null when nothing is left to wait for.
using Completion = std::function<void()>;

struct BackendInfo {
  using Value = std::variant<std::string, double, bool>;
  // Library versions, by name ("onednn": "2.6.3").
  std::vector<std::pair<std::string, std::string>> versions;
  // Everything else info() reports (ISA, device name, ...), in this order.
  std::vector<std::pair<std::string, Value>> details;
};

// Where a captured step's graph stands (Backend::GraphStatusOf): pending until the worker has run
// the end of its capture, then ready, or failed with the reason.
struct GraphStatus {
  bool ready = false;
  std::string failure;
};

class Backend {
 public:
  explicit Backend(Context& ctx) : ctx_(ctx) {}
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // Empty when the backend can run ops here, else why not: a cheap probe that starts nothing.
  // Every op of an unusable backend throws this reason; info() reports it.
  virtual std::string Unavailable() { return {}; }
  // Sets up what the ops need, on the JS thread before the first op is enqueued; a no-op once it
  // succeeded. A backend that cannot start throws, and reports why from then on in Unavailable().
  virtual void Start() {}
  // Runs on the worker at every sync point, after the tasks queued before it: a backend whose
  // tasks only launch asynchronous work (a CUDA stream, Gloo's communication thread) marks the
  // end of that work and returns the Completion that waits for it. Other CPU tasks have finished
  // when they return: nothing to wait for.
  virtual Completion Drain() { return nullptr; }
  // Binds the backend to device `index` of its kind (useDevice); called before any op. A backend
  // with one device accepts only 0.
  virtual void UseDevice(int64_t index);
  // Which set of memory counters (Storage::Stats) this backend's buffers count in: one per device,
  // shared by every addon instance of the process that uses that device.
  virtual int MemoryDomain() const { return 0; }

  virtual BackendInfo Info() = 0;
  virtual void SetNumThreads(int threads) = 0;
  virtual void SetTf32(bool enabled) = 0;
  // The caching allocator: frees what it holds for reuse / how many bytes that is.
  virtual void EmptyCache() = 0;
  virtual int64_t CachedBytes() = 0;

  virtual StoragePtr Upload(const UploadArgs& a) = 0;
  virtual StoragePtr Fill(const FillArgs& a) = 0;
  virtual StoragePtr ZerosLike(const OpArgs& a, const StoragePtr& like) = 0;
  // Runs on the worker (inside a readback task): copies s's values in plain row-major order to
  // host memory `dst`, or launches that copy and returns the Completion that finishes it.
  virtual Completion ReadPlain(const StoragePtr& s, void* dst) = 0;
  virtual StoragePtr Reshape(const ReshapeArgs& a) = 0;
  virtual StoragePtr Cast(const CastArgs& a) = 0;
  virtual StoragePtr CountNonFinite(const CountNonFiniteArgs& a) = 0;

  virtual StoragePtr Conv2dForward(const Conv2dForwardArgs& a) = 0;
  virtual StoragePtr Conv2dBackwardData(const Conv2dBackwardDataArgs& a) = 0;
  virtual Conv2dWeightGrads Conv2dBackwardWeights(const Conv2dBackwardWeightsArgs& a) = 0;

  virtual BatchNormTrainingOutputs BatchNormForwardTraining(const BatchNormForwardTrainingArgs& a) = 0;
  virtual StoragePtr BatchNormForwardInference(const BatchNormForwardInferenceArgs& a) = 0;
  virtual BatchNormGrads BatchNormBackward(const BatchNormBackwardArgs& a) = 0;

  // Synchronized batch norm's local parts (sync_batch_norm.cc).
  virtual StoragePtr SyncBatchNormStats(const SyncBatchNormStatsArgs& a) = 0;
  virtual SyncBatchNormGathered SyncBatchNormGather(const SyncBatchNormGatherArgs& a) = 0;
  virtual SyncBatchNormSums SyncBatchNormBackwardReduce(const SyncBatchNormBackwardReduceArgs& a) = 0;
  virtual StoragePtr SyncBatchNormBackwardElemt(const SyncBatchNormBackwardElemtArgs& a) = 0;

  virtual StoragePtr Elementwise(const ElementwiseArgs& a) = 0;

  virtual Pool2dOutputs Pool2dForward(const Pool2dForwardArgs& a) = 0;
  virtual StoragePtr Pool2dBackward(const Pool2dBackwardArgs& a) = 0;

  virtual StoragePtr LinearForward(const LinearForwardArgs& a) = 0;
  virtual LinearGrads LinearBackward(const LinearBackwardArgs& a) = 0;

  virtual SoftmaxCrossEntropyOutputs SoftmaxCrossEntropyForward(const SoftmaxCrossEntropyForwardArgs& a) = 0;
  virtual StoragePtr SoftmaxCrossEntropyBackward(const SoftmaxCrossEntropyBackwardArgs& a) = 0;

  virtual void SgdStep(const SgdArgs& a) = 0;

  // Enqueues a copy of src's values into dst (same shape and type): the static inputs of a
  // captured step, the device-side learning rate of SGD.
  virtual void CopyInto(const CopyIntoArgs& a) = 0;

  // --- Captured steps (CUDA graphs; ops/graph.cc, lib/train/capture.ts) ------------------------
  // A backend without graphs (the CPU) keeps these defaults, which refuse with ERR_UNSUPPORTED;
  // train.captureStep then runs its step eagerly and says so.
  // JS thread. Enqueues the start of a capture of everything enqueued until CaptureEnd; returns
  // the id of the graph it will make.
  virtual uint64_t CaptureBegin();
  // JS thread. Enqueues the end of the capture: its graph is instantiated (keep) or discarded.
  virtual void CaptureEnd(bool keep);
  // JS thread. Enqueues a replay of graph `id`; an id the backend does not hold is refused.
  virtual void GraphLaunch(uint64_t id);
  // JS thread. Drops graph `id` once the replays already enqueued have run; an unknown id is
  // harmless.
  virtual void GraphRelease(uint64_t id);
  // JS thread. Never waits: pending, ready, or failed with why (a failure is also reported at the
  // next sync point after the end of the capture).
  virtual GraphStatus GraphStatusOf(uint64_t id);
  // Worker. Whether the tasks now running are being captured (recorded, not run): there is then
  // nothing to wait for, and waiting would break the capture.
  virtual bool Capturing() const { return false; }

  // --- Collectives (collectives.cc): one process group per context ---------------------------
  // JS thread. Creates this rank's end of the group and returns what the other ranks need to
  // connect to it (Gloo: the addresses it listens on; NCCL: rank 0's unique id, empty
  // elsewhere), which the rendezvous hands round. Refuses a second group.
  virtual std::vector<uint8_t> GroupPrepare(const GroupArgs& a) = 0;
  // Worker (inside a readback task). Connects to every peer from what each rank's GroupPrepare
  // returned, indexed by rank; throws after the group's timeout.
  virtual void GroupConnect(const std::vector<std::vector<uint8_t>>& published) = 0;
  // JS thread. Leaves the group; collectives already queued still run (or fail) in order.
  virtual void GroupDestroy() = 0;
  // Any thread. Makes every collective that is blocked, or will start, fail at once with `why`
  // (a peer that left, an environment torn down, the process exiting). No group: nothing.
  virtual void GroupAbort(const std::string& why) = 0;
  // JS thread. Enqueues a collective's start and returns its ticket and outputs. The
  // communication may run beside the queue's worker (Gloo's thread) so that ops queued after the
  // start overlap it; it writes the outputs, and releases them once it has run, whether or not
  // anyone waits for it.
  virtual StartedCollective CollectiveStart(const CollectiveArgs& a) = 0;
  // JS thread. Enqueues the wait for a started collective: ops queued after it may read its
  // outputs. A failure is reported at the next sync point, naming the collective and, where it
  // can be known, the peer. Waiting is a fence: waiting twice is harmless, and a collective
  // nobody waits for still runs in order (a later wait or sync point reports the group broken).
  virtual void CollectiveWait(uint64_t ticket) = 0;

 protected:
  Context& ctx_;
};

// Refusals worded the same on every backend (ops/pool2d.cc): a pooling argument the backend's
// library cannot take ("<op>: <why> (input ..., kernel ..., stride ..., padding ...)"), and a
// max-pooling workspace that does not come from a forward of this geometry.
[[noreturn]] void RefusePool(const PoolGeometry& g, const std::string& why);
[[noreturn]] void RefuseWorkspace(const PoolGeometry& g);
// What every backend checks before starting a collective (ops/collectives.cc): that there is a
// group (world_size 0: none) and that the arguments fit it.
void CheckCollectiveArgs(const CollectiveArgs& a, int world_size);

}  // namespace cr
