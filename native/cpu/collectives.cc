// Collectives on the CPU: Gloo (gloo_group.h) over TCP. The start, a task of the queue, copies
// the inputs in queue order into the buffer Gloo works on and hands the job to the group's
// thread, which communicates and writes the outputs; a later task (the wait) blocks until the
// job has run. Between the two, the worker runs the ops queued in between: that is the overlap
// DDP relies on.
//
// Copies: a single input is copied into its output and reduced there in place (an all-gather
// into its slot of the output); several inputs (a DDP bucket) are packed into one flat buffer,
// so that one Gloo call moves them all, and unpacked into the outputs. The flat buffer is a
// storage like any other, counted by memory() while the collective is in flight.
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>

#include <cstring>

#include "cpu_backend.h"
#include "gloo_group.h"

namespace cr::cpu {

std::shared_ptr<GlooGroup> CpuBackend::Group() {
  std::lock_guard<std::mutex> lock(group_mu_);
  return group_;
}

std::vector<uint8_t> CpuBackend::GroupPrepare(const GroupArgs& a) {
  if (Group()) ThrowRangeError("groupPrepare: this process is already in a process group; destroy it first");
  auto group = std::make_shared<GlooGroup>(a.rank, a.world_size, std::chrono::milliseconds(a.timeout_ms), a.host);
  std::vector<uint8_t> published = group->Published();
  std::lock_guard<std::mutex> lock(group_mu_);
  group_ = std::move(group);
  return published;
}

void CpuBackend::GroupConnect(const std::vector<std::vector<uint8_t>>& published) {
  std::shared_ptr<GlooGroup> group = Group();
  if (!group) Fail("ERR_DIST_NOT_INITIALIZED", "no process group to connect (groupPrepare first)");
  group->Connect(published);
}

void CpuBackend::GroupDestroy() {
  std::shared_ptr<GlooGroup> group;
  {
    std::lock_guard<std::mutex> lock(group_mu_);
    group = std::move(group_);
  }
  // Tasks still queued keep the group alive until they ran; the last one to drop it joins its
  // thread, off the JS thread when that is the worker.
}

void CpuBackend::GroupAbort(const std::string& why) {
  if (std::shared_ptr<GlooGroup> group = Group()) group->Abort(why);
}

Completion CpuBackend::Drain() {
  std::shared_ptr<GlooGroup> group = Group();
  if (!group) return nullptr;
  // The jobs handed over so far (every start queued before this sync point), waited for off the
  // worker, which goes on with the next tasks.
  const uint64_t upto = group->Submitted();
  return [group, upto] { group->WaitDone(upto); };
}

StartedCollective CpuBackend::CollectiveStart(const CollectiveArgs& a) {
  std::shared_ptr<GlooGroup> group = Group();
  CheckCollectiveArgs(a, group ? group->size : 0);
  int64_t total = 0;
  for (const StoragePtr& s : a.inputs) total += s->Numel();
  std::vector<CpuStoragePtr> outputs;
  if (a.kind == CollectiveKind::kAllGather) {
    std::vector<int64_t> dims{group->size};
    dims.insert(dims.end(), a.inputs[0]->dims.begin(), a.inputs[0]->dims.end());
    outputs.push_back(Alloc(dims, DType::kFloat32, PlainDesc(dims, DType::kFloat32)));
  } else {
    for (const StoragePtr& s : a.inputs) outputs.push_back(Alloc(s->dims, DType::kFloat32, PlainDesc(s->dims, DType::kFloat32)));
  }
  // The buffer Gloo works on: the output itself, a flat one for several, none for a barrier.
  CpuStoragePtr flat = outputs.empty() ? nullptr : outputs.size() == 1 ? outputs[0] : Alloc({total}, DType::kFloat32, PlainDesc({total}, DType::kFloat32));
  const uint64_t ticket = group->Issue();
  const size_t space = a.task.find(' ');
  const std::string name = a.task.substr(0, space) + " #" + std::to_string(ticket) + (space == std::string::npos ? "" : a.task.substr(space));
  const size_t n = size_t(total);
  float* const buf = flat ? static_cast<float*>(flat->data) : nullptr;

  GlooGroup::Run communicate;
  switch (a.kind) {
    case CollectiveKind::kAllReduce: {
      const bool max = a.op == ReduceOp::kMax;
      const float scale = a.op == ReduceOp::kMean ? 1.0f / float(group->size) : 1.0f;
      communicate = [buf, n, max, scale](const std::shared_ptr<gloo::Context>& c, std::chrono::milliseconds timeout, uint32_t tag) {
        gloo::AllreduceOptions o(c);
        o.setOutput(buf, n);
        using Reduce = void (*)(void*, const void*, const void*, size_t);
        o.setReduceFunction(max ? static_cast<Reduce>(&gloo::max<float>) : static_cast<Reduce>(&gloo::sum<float>));
        o.setTag(tag);
        o.setTimeout(timeout);
        gloo::allreduce(o);
        if (scale != 1.0f) {
          for (size_t i = 0; i < n; ++i) buf[i] *= scale;
        }
      };
      break;
    }
    case CollectiveKind::kBroadcast: {
      const int root = a.root;
      communicate = [buf, n, root](const std::shared_ptr<gloo::Context>& c, std::chrono::milliseconds timeout, uint32_t tag) {
        gloo::BroadcastOptions o(c);
        o.setOutput(buf, n);
        o.setRoot(root);
        o.setTag(tag);
        o.setTimeout(timeout);
        gloo::broadcast(o);
      };
      break;
    }
    case CollectiveKind::kAllGather: {
      const int rank = group->rank;
      communicate = [buf, n, rank](const std::shared_ptr<gloo::Context>& c, std::chrono::milliseconds timeout, uint32_t tag) {
        // Gloo reads this rank's part from the output buffer when input and output are one.
        gloo::AllgatherOptions o(c);
        o.setInput(buf + size_t(rank) * n, n);
        o.setOutput(buf, n * size_t(c->size));
        o.setTag(tag);
        o.setTimeout(timeout);
        gloo::allgather(o);
      };
      break;
    }
    case CollectiveKind::kBarrier:
      communicate = [](const std::shared_ptr<gloo::Context>& c, std::chrono::milliseconds timeout, uint32_t tag) {
        gloo::BarrierOptions o(c);
        o.setTag(tag);
        o.setTimeout(timeout);
        gloo::barrier(o);
      };
      break;
  }

  // The job owns the outputs and the flat buffer until it has run; then only the caller's
  // handles keep the outputs.
  std::vector<CpuStoragePtr> unpack = outputs.size() > 1 ? outputs : std::vector<CpuStoragePtr>{};
  GlooGroup::Run run = [communicate = std::move(communicate), flat, unpack = std::move(unpack)](
                           const std::shared_ptr<gloo::Context>& c, std::chrono::milliseconds timeout, uint32_t tag) {
    communicate(c, timeout, tag);
    const float* src = flat ? static_cast<const float*>(flat->data) : nullptr;
    for (const CpuStoragePtr& out : unpack) {
      std::memcpy(out->data, src, size_t(out->Numel()) * sizeof(float));
      src += out->Numel();
    }
  };

  std::vector<CpuStoragePtr> inputs;
  for (const StoragePtr& s : a.inputs) inputs.push_back(Cpu(s));
  const size_t at = a.kind == CollectiveKind::kAllGather ? size_t(group->rank) * n : 0;
  Push(name + " start", [this, group, ticket, name, buf, at, inputs = std::move(inputs), run = std::move(run)]() mutable {
    // Every issued ticket is submitted, also when the copy fails, so later jobs still run in order.
    std::exception_ptr copy_failed;
    try {
      size_t offset = at;
      for (const CpuStoragePtr& s : inputs) {
        CopyPlain(*s, buf + offset);
        offset += size_t(s->Numel());
      }
    } catch (...) {
      copy_failed = std::current_exception();
    }
    if (copy_failed) {
      run = [copy_failed](const std::shared_ptr<gloo::Context>&, std::chrono::milliseconds, uint32_t) { std::rethrow_exception(copy_failed); };
    }
    group->Submit(ticket, name, std::move(run));
  });
  return StartedCollective{ticket, std::vector<StoragePtr>(outputs.begin(), outputs.end())};
}

void CpuBackend::CollectiveWait(uint64_t ticket) {
  std::shared_ptr<GlooGroup> group = Group();
  if (!group) Fail("ERR_DIST_NOT_INITIALIZED", "collectiveWait: no process group (it was destroyed)");
  if (ticket >= group->Issued()) {
    ThrowRangeError("collectiveWait: ticket " + std::to_string(ticket) + " is not a started collective of this group");
  }
  Push("collectiveWait #" + std::to_string(ticket), [group, ticket] { group->Wait(ticket); });
}

}  // namespace cr::cpu
