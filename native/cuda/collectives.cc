// Collectives on CUDA: NCCL, as PyTorch uses it. Rank 0 makes the ncclUniqueId, the rendezvous
// (lib/distributed) hands it to the others, and every rank joins one communicator. Collectives
// are launched on the backend's stream in queue order, so they order with the ops around them
// without any host wait (and, on one stream, do not overlap them: a stream of its own with
// events, as PyTorch's reducer has, is the next step). A collective's wait (CollectiveWait)
// records an event after it and polls that event and NCCL's asynchronous error, aborting the
// communicator after the group's timeout, so that a peer that died or hangs becomes an error
// instead of a stream that never finishes. The outputs are the caller's from the start; the
// launch task holds them until NCCL's work is on the stream, and the stream-ordered allocator
// keeps their memory until that work has run.
//
// NCCL is optional, at build time (the nvidia-nccl-cu13 wheel, found like cuDNN's: without its
// header the collectives refuse with ERR_DIST_UNSUPPORTED) and at run time: libnccl.so.2 is
// opened at the first groupPrepare, not linked, so the CUDA backend loads and runs every op on a
// machine without NCCL, where only the collectives refuse, saying why. The RUNPATH recorded at
// build time names the wheel's folder; LD_LIBRARY_PATH may name another.
#include <dlfcn.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <type_traits>

#include "cuda_backend.h"

#if CR_HAVE_NCCL
#include <nccl.h>
#endif

namespace cr::cuda {

#if CR_HAVE_NCCL

namespace {

// The NCCL functions used here, from libnccl.so.2; `error` says why they are not there.
struct NcclApi {
  decltype(&ncclGetUniqueId) GetUniqueId = nullptr;
  decltype(&ncclCommInitRankConfig) CommInitRankConfig = nullptr;
  decltype(&ncclCommGetAsyncError) CommGetAsyncError = nullptr;
  decltype(&ncclCommAbort) CommAbort = nullptr;
  decltype(&ncclAllReduce) AllReduce = nullptr;
  decltype(&ncclBroadcast) Broadcast = nullptr;
  decltype(&ncclAllGather) AllGather = nullptr;
  decltype(&ncclGetErrorString) GetErrorString = nullptr;
  decltype(&ncclGetLastError) GetLastError = nullptr;
  decltype(&ncclGetVersion) GetVersion = nullptr;
  std::string error;
};

const NcclApi& Nccl() {
  static const NcclApi api = [] {
    NcclApi a;
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      a.error = dlerror();
      return a;
    }
    auto bind = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (!fn && a.error.empty()) a.error = std::string("libnccl.so.2 has no ") + name + " (NCCL older than 2.14?)";
    };
    bind(a.GetUniqueId, "ncclGetUniqueId");
    bind(a.CommInitRankConfig, "ncclCommInitRankConfig");
    bind(a.CommGetAsyncError, "ncclCommGetAsyncError");
    bind(a.CommAbort, "ncclCommAbort");
    bind(a.AllReduce, "ncclAllReduce");
    bind(a.Broadcast, "ncclBroadcast");
    bind(a.AllGather, "ncclAllGather");
    bind(a.GetErrorString, "ncclGetErrorString");
    bind(a.GetLastError, "ncclGetLastError");
    bind(a.GetVersion, "ncclGetVersion");
    return a;
  }();
  return api;
}

void CheckNccl(ncclResult_t r, const char* call) {
  if (r != ncclSuccess && r != ncclInProgress) {
    Fail("NCCL_" + std::to_string(int(r)), std::string(Nccl().GetErrorString(r)) + " (" + call + "): " + Nccl().GetLastError(nullptr));
  }
}

#define CR_NCCL(expr) CheckNccl((expr), #expr)

}  // namespace

std::string NcclUnavailable(int& version) {
  const NcclApi& api = Nccl();
  version = 0;
  if (api.error.empty()) api.GetVersion(&version);
  return api.error;
}

struct NcclGroup {
  int rank = 0, size = 1;
  std::chrono::milliseconds timeout{0};
  ncclUniqueId id{};
  ncclComm_t comm = nullptr;
  uint64_t issued = 0;
  std::mutex mu;
  std::string aborted;
  std::string broken;

  ~NcclGroup() {
    if (comm) Nccl().CommAbort(comm);
  }

  // Polls until `done` or NCCL reports an error, aborting the communicator after the timeout.
  // Worker thread.
  template <typename Done>
  void Await(const std::string& what, Done&& done) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (done()) return;
      ncclResult_t state = ncclSuccess;
      Nccl().CommGetAsyncError(comm, &state);
      std::string why;
      {
        std::lock_guard<std::mutex> lock(mu);
        why = aborted;
      }
      if (state != ncclSuccess && state != ncclInProgress) {
        why = std::string("NCCL reported: ") + Nccl().GetErrorString(state) + ": " + Nccl().GetLastError(comm);
      } else if (why.empty() && std::chrono::steady_clock::now() > deadline) {
        why = "timed out on rank " + std::to_string(rank) + " after " + std::to_string(timeout.count()) +
              " ms: another rank did not take part (it died or hangs, or called other collectives in another order)";
      }
      if (!why.empty()) {
        Nccl().CommAbort(comm);
        comm = nullptr;
        broken = what + ": " + why;
        Fail("ERR_DIST_FAILED", why);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
};

std::vector<uint8_t> CudaBackend::GroupPrepare(const GroupArgs& a) {
  if (std::atomic_load(&group_)) ThrowRangeError("groupPrepare: this process is already in a process group; destroy it first");
  if (!Nccl().error.empty()) {
    Fail("ERR_DIST_UNSUPPORTED", "the CUDA collectives need NCCL, which could not be loaded: " + Nccl().error +
                                     " (install the nvidia-nccl-cu13 wheel, scripts/setup-cudnn.sh, or put libnccl.so.2 on LD_LIBRARY_PATH)");
  }
  auto g = std::make_shared<NcclGroup>();
  g->rank = a.rank;
  g->size = a.world_size;
  g->timeout = std::chrono::milliseconds(a.timeout_ms);
  std::vector<uint8_t> published;
  if (a.rank == 0) {
    CR_NCCL(Nccl().GetUniqueId(&g->id));
    published.assign(reinterpret_cast<const uint8_t*>(&g->id), reinterpret_cast<const uint8_t*>(&g->id) + sizeof(g->id));
  }
  std::atomic_store(&group_, g);
  return published;
}

void CudaBackend::GroupConnect(const std::vector<std::vector<uint8_t>>& published) {
  std::shared_ptr<NcclGroup> g = std::atomic_load(&group_);
  if (!g) Fail("ERR_DIST_NOT_INITIALIZED", "no process group to connect (groupPrepare first)");
  if (published.size() != size_t(g->size) || published[0].size() != sizeof(ncclUniqueId)) {
    Fail("ERR_DIST_CONNECT", "rank 0 did not publish an NCCL unique id for a group of " + std::to_string(g->size));
  }
  std::memcpy(&g->id, published[0].data(), sizeof(ncclUniqueId));
  CR_CUDA(cudaSetDevice(device_->index));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  // Non-blocking, so that a rank that never joins becomes a timeout here.
  config.blocking = 0;
  CR_NCCL(Nccl().CommInitRankConfig(&g->comm, g->size, g->id, g->rank, &config));
  g->Await("groupConnect", [&] {
    ncclResult_t state = ncclInProgress;
    Nccl().CommGetAsyncError(g->comm, &state);
    return state == ncclSuccess;
  });
}

void CudaBackend::GroupDestroy() {
  std::atomic_store(&group_, std::shared_ptr<NcclGroup>());
}

void CudaBackend::GroupAbort(const std::string& why) {
  std::shared_ptr<NcclGroup> g = std::atomic_load(&group_);
  if (!g) return;
  std::lock_guard<std::mutex> lock(g->mu);
  if (g->aborted.empty()) g->aborted = why;
}

StartedCollective CudaBackend::CollectiveStart(const CollectiveArgs& a) {
  std::shared_ptr<NcclGroup> g = std::atomic_load(&group_);
  CheckCollectiveArgs(a, g ? g->size : 0);
  const uint64_t ticket = g->issued++;
  const std::string task = a.task.substr(0, a.task.find(' ')) + " #" + std::to_string(ticket);
  std::vector<CudaStoragePtr> outputs;
  if (a.kind == CollectiveKind::kAllGather) {
    std::vector<int64_t> dims{g->size};
    dims.insert(dims.end(), a.inputs[0]->dims.begin(), a.inputs[0]->dims.end());
    outputs.push_back(Alloc(dims));
  } else {
    for (const StoragePtr& s : a.inputs) outputs.push_back(Alloc(s->dims));
  }
  std::vector<CudaStoragePtr> inputs;
  for (const StoragePtr& s : a.inputs) inputs.push_back(Cuda(s));
  const CollectiveKind kind = a.kind;
  const ncclRedOp_t op = a.op == ReduceOp::kMax ? ncclMax : a.op == ReduceOp::kMean ? ncclAvg : ncclSum;
  const int root = a.root;
  Enqueue(task + " start", [this, g, outputs, inputs, kind, op, root] {
    if (!g->comm) Fail("ERR_DIST_FAILED", g->broken.empty() ? "the process group is not connected" : "the process group failed earlier: " + g->broken);
    cudaStream_t s = stream();
    if (kind == CollectiveKind::kAllGather) {
      CR_NCCL(Nccl().AllGather(inputs[0]->Ptr(), outputs[0]->Ptr(), size_t(inputs[0]->Numel()), ncclFloat32, g->comm, s));
    } else if (kind == CollectiveKind::kBarrier) {
      DeviceMemory one(device(), sizeof(float));
      CR_NCCL(Nccl().AllReduce(one.get(), one.get(), 1, ncclFloat32, ncclSum, g->comm, s));
    } else if (outputs.size() == 1) {
      if (kind == CollectiveKind::kAllReduce) {
        CR_NCCL(Nccl().AllReduce(inputs[0]->Ptr(), outputs[0]->Ptr(), size_t(inputs[0]->Numel()), ncclFloat32, op, g->comm, s));
      } else {
        CR_NCCL(Nccl().Broadcast(inputs[0]->Ptr(), outputs[0]->Ptr(), size_t(inputs[0]->Numel()), ncclFloat32, root, g->comm, s));
      }
    } else {
      // One flat bucket, so that many small gradients cost one NCCL call.
      int64_t total = 0;
      for (const CudaStoragePtr& x : inputs) total += x->Numel();
      DeviceMemory bucket(device(), size_t(total) * sizeof(float));
      float* b = static_cast<float*>(bucket.get());
      for (const CudaStoragePtr& x : inputs) {
        CR_CUDA(cudaMemcpyAsync(b, x->Ptr(), x->bytes, cudaMemcpyDeviceToDevice, s));
        b += x->Numel();
      }
      if (kind == CollectiveKind::kAllReduce) {
        CR_NCCL(Nccl().AllReduce(bucket.get(), bucket.get(), size_t(total), ncclFloat32, op, g->comm, s));
      } else {
        CR_NCCL(Nccl().Broadcast(bucket.get(), bucket.get(), size_t(total), ncclFloat32, root, g->comm, s));
      }
      b = static_cast<float*>(bucket.get());
      for (const CudaStoragePtr& out : outputs) {
        CR_CUDA(cudaMemcpyAsync(out->Ptr(), b, out->bytes, cudaMemcpyDeviceToDevice, s));
        b += out->Numel();
      }
    }
  });
  return StartedCollective{ticket, std::vector<StoragePtr>(outputs.begin(), outputs.end())};
}

void CudaBackend::CollectiveWait(uint64_t ticket) {
  std::shared_ptr<NcclGroup> g = std::atomic_load(&group_);
  if (!g) Fail("ERR_DIST_NOT_INITIALIZED", "collectiveWait: no process group (it was destroyed)");
  if (ticket >= g->issued) {
    ThrowRangeError("collectiveWait: ticket " + std::to_string(ticket) + " is not a started collective of this group");
  }
  const std::string task = "collectiveWait #" + std::to_string(ticket);
  Enqueue(task, [this, g, task] {
    if (!g->comm) Fail("ERR_DIST_FAILED", "the process group failed earlier: " + g->broken);
    // Everything launched on the stream before this task, the collective among them.
    std::unique_ptr<cudaEvent_t, void (*)(cudaEvent_t*)> done(new cudaEvent_t(nullptr), [](cudaEvent_t* e) {
      if (*e) cudaEventDestroy(*e);
      delete e;
    });
    CR_CUDA(cudaEventCreateWithFlags(done.get(), cudaEventDisableTiming));
    CR_CUDA(cudaEventRecord(*done, stream()));
    g->Await(task, [&] { return cudaEventQuery(*done) == cudaSuccess; });
  });
}

#else  // !CR_HAVE_NCCL

namespace {

[[noreturn]] void NoNccl() {
  Fail("ERR_DIST_UNSUPPORTED",
       "this CUDA addon was built without NCCL, which its collectives need: install the nvidia-nccl-cu13 wheel "
       "(scripts/setup-cudnn.sh) and rebuild (npm run build:native)");
}

}  // namespace

struct NcclGroup {};

std::string NcclUnavailable(int& version) {
  version = 0;
  return "this CUDA addon was built without NCCL's header (the nvidia-nccl-cu13 wheel)";
}

std::vector<uint8_t> CudaBackend::GroupPrepare(const GroupArgs&) { NoNccl(); }
void CudaBackend::GroupConnect(const std::vector<std::vector<uint8_t>>&) { NoNccl(); }
void CudaBackend::GroupDestroy() {}
void CudaBackend::GroupAbort(const std::string&) {}
StartedCollective CudaBackend::CollectiveStart(const CollectiveArgs& a) {
  CheckCollectiveArgs(a, 0);
  NoNccl();
}
void CudaBackend::CollectiveWait(uint64_t) { NoNccl(); }

#endif

}  // namespace cr::cuda
