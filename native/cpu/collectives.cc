// Collectives on the CPU: Gloo (gloo_group.h) over TCP. The worker copies a collective's inputs
// into one flat bucket in queue order and hands it to the group's thread; a later task waits for
// it and copies the result into the outputs. Between the two, the worker runs the ops queued in
// between: that is the overlap DDP relies on.
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>

#include <cstring>

#include "cpu_backend.h"
#include "gloo_group.h"

namespace cr::cpu {

struct PendingCollective {
  std::shared_ptr<GlooGroup> group;
  uint64_t ticket = 0;
  std::string task;
  std::shared_ptr<std::vector<float>> bucket;
  std::vector<CpuStoragePtr> outputs;
  // Applied when copying out: 1 / world size for a mean.
  float scale = 1;
};

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
  pending_.clear();
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
  pending_.clear();
  // Tasks still queued keep the group alive until they ran; the last one to drop it joins its
  // thread, off the JS thread when that is the worker.
}

void CpuBackend::GroupAbort(const std::string& why) {
  if (std::shared_ptr<GlooGroup> group = Group()) group->Abort(why);
}

uint64_t CpuBackend::CollectiveStart(const CollectiveArgs& a) {
  std::shared_ptr<GlooGroup> group = Group();
  CheckCollectiveArgs(a, group ? group->size : 0);
  auto p = std::make_shared<PendingCollective>();
  p->group = group;
  const uint64_t ticket = group->Issue();
  p->ticket = ticket;
  p->task = a.task.substr(0, a.task.find(' ')) + " #" + std::to_string(ticket) +
            (a.task.find(' ') == std::string::npos ? "" : a.task.substr(a.task.find(' ')));
  int64_t total = 0;
  for (const StoragePtr& s : a.inputs) total += s->Numel();
  if (a.kind == CollectiveKind::kAllGather) {
    std::vector<int64_t> dims{group->size};
    dims.insert(dims.end(), a.inputs[0]->dims.begin(), a.inputs[0]->dims.end());
    p->outputs.push_back(Alloc(dims, DType::kFloat32, PlainDesc(dims, DType::kFloat32)));
    p->bucket = std::make_shared<std::vector<float>>(size_t(total * group->size));
  } else {
    for (const StoragePtr& s : a.inputs) p->outputs.push_back(Alloc(s->dims, DType::kFloat32, PlainDesc(s->dims, DType::kFloat32)));
    p->bucket = std::make_shared<std::vector<float>>(size_t(total));
  }
  if (a.kind == CollectiveKind::kAllReduce && a.op == ReduceOp::kMean) p->scale = 1.0f / float(group->size);

  GlooGroup::Run run;
  const std::shared_ptr<std::vector<float>> bucket = p->bucket;
  const size_t n = size_t(total);
  switch (a.kind) {
    case CollectiveKind::kAllReduce: {
      const bool max = a.op == ReduceOp::kMax;
      run = [bucket, n, max](const std::shared_ptr<gloo::Context>& c, std::chrono::milliseconds timeout, uint32_t tag) {
        gloo::AllreduceOptions o(c);
        o.setOutput(bucket->data(), n);
        using Reduce = void (*)(void*, const void*, const void*, size_t);
        o.setReduceFunction(max ? static_cast<Reduce>(&gloo::max<float>) : static_cast<Reduce>(&gloo::sum<float>));
        o.setTag(tag);
        o.setTimeout(timeout);
        gloo::allreduce(o);
      };
      break;
    }
    case CollectiveKind::kBroadcast: {
      const int root = a.root;
      run = [bucket, n, root](const std::shared_ptr<gloo::Context>& c, std::chrono::milliseconds timeout, uint32_t tag) {
        gloo::BroadcastOptions o(c);
        o.setOutput(bucket->data(), n);
        o.setRoot(root);
        o.setTag(tag);
        o.setTimeout(timeout);
        gloo::broadcast(o);
      };
      break;
    }
    case CollectiveKind::kAllGather: {
      const int rank = group->rank;
      run = [bucket, n, rank](const std::shared_ptr<gloo::Context>& c, std::chrono::milliseconds timeout, uint32_t tag) {
        // Gloo reads this rank's part from the output buffer when input and output are one.
        gloo::AllgatherOptions o(c);
        o.setInput(bucket->data() + size_t(rank) * n, n);
        o.setOutput(bucket->data(), n * size_t(c->size));
        o.setTag(tag);
        o.setTimeout(timeout);
        gloo::allgather(o);
      };
      break;
    }
    case CollectiveKind::kBarrier:
      run = [](const std::shared_ptr<gloo::Context>& c, std::chrono::milliseconds timeout, uint32_t tag) {
        gloo::BarrierOptions o(c);
        o.setTag(tag);
        o.setTimeout(timeout);
        gloo::barrier(o);
      };
      break;
  }

  std::vector<CpuStoragePtr> inputs;
  for (const StoragePtr& s : a.inputs) inputs.push_back(Cpu(s));
  const size_t at = a.kind == CollectiveKind::kAllGather ? size_t(group->rank) * n : 0;
  Push(p->task + " start", [this, group, ticket, name = p->task, bucket, at, inputs = std::move(inputs), run = std::move(run)]() mutable {
    // Every issued ticket is submitted, also when the copy fails, so later jobs still run in order.
    std::exception_ptr copy_failed;
    try {
      size_t offset = at;
      for (const CpuStoragePtr& s : inputs) {
        CopyPlain(*s, bucket->data() + offset);
        offset += size_t(s->Numel());
      }
    } catch (...) {
      copy_failed = std::current_exception();
    }
    if (copy_failed) run = [copy_failed](const std::shared_ptr<gloo::Context>&, std::chrono::milliseconds, uint32_t) { std::rethrow_exception(copy_failed); };
    group->Submit(ticket, name, std::move(run));
  });
  pending_[ticket] = std::move(p);
  return ticket;
}

std::vector<StoragePtr> CpuBackend::CollectiveWait(uint64_t ticket) {
  auto it = pending_.find(ticket);
  if (it == pending_.end()) {
    ThrowRangeError("collectiveWait: ticket " + std::to_string(ticket) + " is not a started collective of this group (or was waited for)");
  }
  std::shared_ptr<PendingCollective> p = std::move(it->second);
  pending_.erase(it);
  Push(p->task, [p] {
    p->group->Wait(p->ticket);
    const float* src = p->bucket->data();
    for (const CpuStoragePtr& out : p->outputs) {
      float* dst = static_cast<float*>(out->data);
      const size_t n = size_t(out->Numel());
      if (p->scale == 1) {
        std::memcpy(dst, src, n * sizeof(float));
      } else {
        for (size_t i = 0; i < n; ++i) dst[i] = src[i] * p->scale;
      }
      src += n;
    }
  });
  return std::vector<StoragePtr>(p->outputs.begin(), p->outputs.end());
}

}  // namespace cr::cpu
