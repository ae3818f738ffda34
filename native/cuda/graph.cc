// Captured steps (lib/train/capture.ts): a whole training step recorded once into a CUDA graph
// and replayed with one cudaGraphLaunch, so that the worker no longer launches each of its few
// hundred kernels and cuDNN calls, the cost that bounds a small network's step.
//
// The capture is stream capture of the compute stream, begun and ended by two queued tasks: every
// task queued in between launches its work as usual, and CUDA records it instead of running it.
// cudaStreamCaptureModeThreadLocal: only the worker, the one thread that launches on the stream,
// is held to capture's rules, so the JS and completion threads go on freeing buffers and waiting
// for other streams' events (the driver documents the modes at cuThreadExchangeStreamCaptureMode).
// What the rules forbid is kept out of a capture, each where it would happen:
// - sync points and uploads are refused on the JS thread when enqueued (Context::RefuseInCapture;
//   an upload's pinned staging and copy-stream event live outside the graph), with the worker's
//   RefuseInCapture as backstop; captureEnd then reports the refusal and nothing is instantiated;
// - cuDNN plans are built (algorithms chosen, perhaps measured) on a cache miss only, refused
//   while capturing (CudaBackend::Cached): the step's eager warm-up calls fill the cache, and the
//   cuDNN workspace does not grow during a capture (CudaBackend::Workspace);
// - memory: capture_ledger.h. Buffers first used during the capture, and the DeviceMemory its
//   tasks make (scratch, reserve spaces), are allocated on the copy stream, which is not captured
//   (AllocateInOrder in cuda_backend.cc; the call in cudaStreamCaptureModeRelaxed, as it is no
//   part of the capture); every buffer the graph touches is kept alive with it; frees that arrive
//   meanwhile wait for the end of the capture;
// - a task that fails while capturing (a refusal, a CUDA or cuDNN status) marks the capture
//   failed; the tasks after it until captureEnd are skipped (their work could only be recorded
//   into a graph that will never run), and the failure reaches the next sync point as usual.
//
// A graph's lifetime: the backend holds it by id until graphRelease, and every queued launch holds
// it too. Its destructor destroys the executable graph (cuGraphExecDestroy lets a launch in flight
// finish first) and drops the buffers it kept, whose frees are enqueued on the compute stream
// after every launch of it. An error of cudaGraphLaunch fails that launch's task, named after the
// graph, and is reported at the next sync point like any op's; a fault inside a replayed kernel
// surfaces at the next sync point as a kernel fault would.
#include "cuda_backend.h"

namespace cr::cuda {

namespace {

enum GraphState : int { kPending = 0, kReady = 1, kFailed = 2 };

std::string GraphName(uint64_t id) { return "captured step, graph " + std::to_string(id); }

}  // namespace

struct CapturedGraph {
  CapturedGraph(std::shared_ptr<Device> d, uint64_t graph_id) : device(std::move(d)), id(graph_id) {}
  ~CapturedGraph() {
    if (exec) {
      cudaError_t st = cudaSetDevice(device->index);
      if (st == cudaSuccess) st = cudaGraphExecDestroy(exec);
      if (st != cudaSuccess) device->RecordDeferred(st, "cudaGraphExecDestroy");
    }
  }
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  // The worker's part, once the capture has ended: why it cannot be replayed, or "" for ready.
  void Settle(const std::string& why) {
    failure = why;
    state.store(why.empty() ? kReady : kFailed, std::memory_order_release);
  }

  const std::shared_ptr<Device> device;
  const uint64_t id;
  // Worker only: the instantiated graph (null unless ready) and what it keeps alive. Declared
  // after `device`, so destroyed before it.
  cudaGraphExec_t exec = nullptr;
  std::vector<std::shared_ptr<void>> kept;
  // Written by the worker (failure first), read by the JS thread once `state` says it is settled.
  std::atomic<int> state{kPending};
  std::string failure;
};

void CudaBackend::RefuseInCapture(const std::string& what) {
  if (!device_ || !device_->capture.Active()) return;
  const std::string message = what + " cannot be part of a captured step (train.captureStep)";
  device_->capture.Fail(OpScope::CurrentOp() + ": " + message);
  Fail("ERR_CAPTURE_REFUSED", message);
}

uint64_t CudaBackend::CaptureBegin() {
  const uint64_t id = next_graph_id_++;
  auto graph = std::make_shared<CapturedGraph>(device_, id);
  Enqueue("captureBegin (" + GraphName(id) + ")", [this, graph] {
    try {
      // The capture allocates on the copy stream (CudaStorage::Ptr), which first waits for the
      // compute stream's work so far: the pool follows that dependency, so the blocks the eager
      // steps before the capture freed are reused by the capture instead of the pool growing
      // beside them.
      cudaEvent_t before = nullptr;
      CR_CUDA(cudaEventCreateWithFlags(&before, cudaEventDisableTiming));
      cudaError_t st = cudaEventRecord(before, stream());
      if (st == cudaSuccess) st = cudaStreamWaitEvent(device_->copy_stream, before, 0);
      const cudaError_t destroyed = cudaEventDestroy(before);
      CheckCuda(st, "cudaStreamWaitEvent(copy_stream, <compute stream's work>)", __FILE__, __LINE__);
      CheckCuda(destroyed, "cudaEventDestroy", __FILE__, __LINE__);
      device_->capture.Begin([&] { CR_CUDA(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal)); });
    } catch (const NativeError& e) {
      // The tasks up to captureEnd then run eagerly, as if no capture had been asked for; the
      // failure is reported at the next sync point and the graph is never launched.
      graph->Settle(std::string("the capture could not begin: ") + e.what());
      throw;
    }
    capturing_ = graph;
  });
  graphs_[id] = std::move(graph);
  return id;
}

void CudaBackend::CaptureEnd(bool keep) {
  // Not Enqueue: its tasks are skipped after a failed capture, and this one must run.
  ctx_.queue.Push(keep ? "captureEnd" : "captureAbort", [this, keep] {
    CR_CUDA(cudaSetDevice(device_->index));
    EndCapture(keep);
  });
}

void CudaBackend::EndCapture(bool keep) {
  std::shared_ptr<CapturedGraph> g = std::move(capturing_);
  capturing_.reset();
  if (!g) return;
  cudaGraph_t graph = nullptr;
  cudaError_t ended = cudaSuccess;
  CaptureLedger::Ended left = device_->capture.End([&] { ended = cudaStreamEndCapture(stream(), &graph); });
  // cudaStreamEndCapture returns the graph even where it also reports the capture invalidated.
  struct GraphOwner {
    cudaGraph_t g;
    ~GraphOwner() {
      if (g && cudaGraphDestroy(g) != cudaSuccess) cudaGetLastError();
    }
  } owner{graph};
  std::string failure = left.failure;
  if (failure.empty() && ended != cudaSuccess) {
    failure = std::string("cudaStreamEndCapture: ") + cudaGetErrorName(ended) + ": " + cudaGetErrorString(ended);
    cudaGetLastError();
  }
  if (failure.empty() && !keep) failure = "the capture was abandoned";
  // The buffers first used in the capture were allocated on the copy stream: the compute stream
  // waits for it before the first launch, and before any of them is freed.
  cudaError_t st = cudaEventRecord(device_->upload_done, device_->copy_stream);
  if (st == cudaSuccess) st = cudaStreamWaitEvent(device_->stream, device_->upload_done, 0);
  if (st != cudaSuccess && failure.empty()) {
    failure = std::string("ordering the capture's allocations: ") + cudaGetErrorName(st);
    cudaGetLastError();
  }
  for (void* p : left.deferred) device_->FreeAsync(p);
  if (failure.empty()) {
    st = cudaGraphInstantiateWithFlags(&g->exec, graph, 0);
    if (st != cudaSuccess) {
      g->exec = nullptr;
      failure = std::string("cudaGraphInstantiateWithFlags: ") + cudaGetErrorName(st) + ": " + cudaGetErrorString(st);
      cudaGetLastError();
    }
  }
  if (failure.empty()) g->kept = std::move(left.kept);
  g->Settle(failure);
  if (keep && !failure.empty()) Fail("ERR_CAPTURE_FAILED", "the " + GraphName(g->id) + " could not be captured: " + failure);
}

void CudaBackend::GraphLaunch(uint64_t id) {
  const auto it = graphs_.find(id);
  if (it == graphs_.end()) {
    ThrowRangeError("graphLaunch: no graph " + std::to_string(id) + " on this backend (released, or never captured here)");
  }
  std::shared_ptr<CapturedGraph> g = it->second;
  Enqueue("graphLaunch (" + GraphName(id) + ")", [this, g] {
    if (!g->exec) {
      Fail("ERR_CAPTURE_FAILED",
           "cannot be replayed: " + (g->failure.empty() ? std::string("its capture did not end") : g->failure));
    }
    CR_CUDA(cudaGraphLaunch(g->exec, stream()));
  });
}

void CudaBackend::GraphRelease(uint64_t id) { graphs_.erase(id); }

GraphStatus CudaBackend::GraphStatusOf(uint64_t id) {
  const auto it = graphs_.find(id);
  if (it == graphs_.end()) return {false, "no graph " + std::to_string(id) + " (released, or never captured here)"};
  const CapturedGraph& g = *it->second;
  switch (g.state.load(std::memory_order_acquire)) {
    case kReady:
      return {true, ""};
    case kFailed:
      return {false, g.failure};
    default:
      return {false, ""};
  }
}

}  // namespace cr::cuda
