// The entry points of distributed training: a process group (joined in two steps around the
// rendezvous that lib/distributed runs over TCP) and the collectives over it. Collectives are
// queued like ops, in order: every rank must start the same ones in the same order.
#include <cstring>

#include "../args.h"
#include "../context.h"
#include "registry.h"

namespace cr {

void CheckCollectiveArgs(const CollectiveArgs& a, int world_size) {
  const std::string& op = OpScope::CurrentOp();
  if (world_size == 0) {
    Fail("ERR_DIST_NOT_INITIALIZED", "no process group: call distributed.init() first (or it was destroyed)");
  }
  if (a.kind == CollectiveKind::kBroadcast && (a.root < 0 || a.root >= world_size)) {
    ThrowRangeError(op + ": root " + std::to_string(a.root) + " is not a rank of this group of " + std::to_string(world_size));
  }
  if (a.kind == CollectiveKind::kAllGather && a.inputs[0]->Numel() * world_size > kMaxNumel) {
    ThrowRangeError(op + ": gathering " + a.inputs[0]->ShapeString() + " from " + std::to_string(world_size) + " ranks is too large");
  }
}

}  // namespace cr

namespace cr::ops {

namespace {

Napi::Uint8Array Bytes(Napi::Env env, const std::vector<uint8_t>& v) {
  Napi::Uint8Array a = Napi::Uint8Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size());
  return a;
}

std::vector<uint8_t> BytesArg(Napi::Value v, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowTypeError(OpScope::CurrentOp() + ": expected " + what + " to be a Uint8Array");
  }
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  return std::vector<uint8_t>(a.Data(), a.Data() + a.ElementLength());
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t max_length) {
  if (info.Length() <= i || !info[i].IsString()) ThrowTypeError(OpScope::CurrentOp() + ": expected " + name + " to be a string");
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.empty() || s.size() > max_length) {
    ThrowRangeError(OpScope::CurrentOp() + ": expected " + name + " of 1 to " + std::to_string(max_length) + " characters");
  }
  return s;
}

// Starts the collective `a` describes on `backend`: { ticket, outputs }, the caller owning the
// outputs from now on. Refused inside a captured step: its communication and its wait are not
// stream work a graph can hold.
Napi::Value Started(Napi::Env env, Backend& backend, const CollectiveArgs& a) {
  Ctx(env).RefuseInCapture(a.task, "a collective");
  const StartedCollective started = backend.CollectiveStart(a);
  Napi::Object o = Napi::Object::New(env);
  o.Set("ticket", Napi::Number::New(env, double(started.ticket)));
  Napi::Array outputs = Napi::Array::New(env, started.outputs.size());
  for (uint32_t k = 0; k < started.outputs.size(); ++k) outputs.Set(k, WrapStorage(env, started.outputs[k]));
  o.Set("outputs", outputs);
  return o;
}

// Inputs of an all-reduce or broadcast: at least one float32 buffer, at most kMaxNumel values in all.
std::vector<StoragePtr> BucketArg(const Napi::CallbackInfo& info, size_t i) {
  std::vector<StoragePtr> bufs = TensorListArg(info, i, "buffers");
  if (bufs.empty()) ThrowRangeError(OpScope::CurrentOp() + ": expected at least one buffer");
  int64_t total = 0;
  for (const StoragePtr& s : bufs) {
    if (s->dtype != DType::kFloat32) {
      ThrowTypeError(OpScope::CurrentOp() + ": expected float32 buffers, got " + DTypeName(s->dtype) + " " + s->ShapeString());
    }
    total += s->Numel();
  }
  if (total > kMaxNumel) ThrowRangeError(OpScope::CurrentOp() + ": " + std::to_string(total) + " values in one collective is too many");
  return bufs;
}

std::string BucketTask(const char* op, const std::vector<StoragePtr>& bufs) {
  int64_t total = 0;
  for (const StoragePtr& s : bufs) total += s->Numel();
  return std::string(op) + " (" + std::to_string(bufs.size()) + " buffers, " + std::to_string(total) + " values)";
}

}  // namespace

// groupPrepare(rank, worldSize, timeoutMs, host) -> Uint8Array (what the others need to connect)
Napi::Value GroupPrepare(const Napi::CallbackInfo& info) {
  return Entry(info, "groupPrepare", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    GroupArgs a;
    const int64_t world = IntArg(info, 1, "worldSize");
    if (world < 1 || world > 65536) ThrowRangeError("groupPrepare: expected a world size of 1 to 65536, got " + std::to_string(world));
    const int64_t rank = IntArg(info, 0, "rank");
    if (rank < 0 || rank >= world) {
      ThrowRangeError("groupPrepare: rank " + std::to_string(rank) + " is outside [0, " + std::to_string(world) + ")");
    }
    a.rank = int(rank);
    a.world_size = int(world);
    a.timeout_ms = IntArg(info, 2, "timeoutMs");
    if (a.timeout_ms < 1 || a.timeout_ms > (int64_t(1) << 31)) ThrowRangeError("groupPrepare: expected timeoutMs of 1 to 2^31");
    a.host = StringArg(info, 3, "host", 255);
    a.task = "groupPrepare";
    return Bytes(info.Env(), backend.GroupPrepare(a));
  });
}

// groupConnect(published: Uint8Array[]) -> Promise<void>, settled once every peer is connected.
Napi::Value GroupConnect(const Napi::CallbackInfo& info) {
  return Entry(info, "groupConnect", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    if (info.Length() < 1 || !info[0].IsArray()) ThrowTypeError("groupConnect: expected an array of Uint8Array, one per rank");
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<std::vector<uint8_t>> published;
    for (uint32_t k = 0; k < arr.Length(); ++k) published.push_back(BytesArg(arr.Get(k), "published[" + std::to_string(k) + "]"));
    return EnqueueReadback(info.Env(), "groupConnect", info.Env().Undefined(),
                           [&backend, published = std::move(published)]() -> Completion {
                             backend.GroupConnect(published);
                             return nullptr;
                           });
  });
}

Napi::Value GroupDestroy(const Napi::CallbackInfo& info) {
  return Entry(info, "groupDestroy", [&]() -> Napi::Value {
    Ctx(info.Env()).backend_unchecked().GroupDestroy();
    return info.Env().Undefined();
  });
}

// groupAbort(reason): every collective blocked or still to run fails with the reason.
Napi::Value GroupAbort(const Napi::CallbackInfo& info) {
  return Entry(info, "groupAbort", [&]() -> Napi::Value {
    Ctx(info.Env()).backend_unchecked().GroupAbort(StringArg(info, 0, "reason", 4096));
    return info.Env().Undefined();
  });
}

// allReduce(buffers, op: 'sum' | 'mean' | 'max') -> { ticket, outputs }
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  return Entry(info, "allReduce", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    CollectiveArgs a;
    a.kind = CollectiveKind::kAllReduce;
    a.inputs = BucketArg(info, 0);
    const std::string op = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    if (op == "sum") {
      a.op = ReduceOp::kSum;
    } else if (op == "mean") {
      a.op = ReduceOp::kMean;
    } else if (op == "max") {
      a.op = ReduceOp::kMax;
    } else {
      ThrowTypeError("allReduce: expected op 'sum', 'mean' or 'max'");
    }
    a.task = BucketTask("allReduce", a.inputs);
    return Started(info.Env(), backend, a);
  });
}

// broadcast(buffers, root) -> { ticket, outputs }
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  return Entry(info, "broadcast", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    CollectiveArgs a;
    a.kind = CollectiveKind::kBroadcast;
    a.inputs = BucketArg(info, 0);
    const int64_t root = IntArg(info, 1, "root");
    if (root < 0 || root >= 65536) ThrowRangeError("broadcast: root " + std::to_string(root) + " is not a rank");
    a.root = int(root);
    a.task = BucketTask("broadcast", a.inputs);
    return Started(info.Env(), backend, a);
  });
}

// allGather(buffer) -> { ticket, outputs: [[worldSize, ...shape]] }
Napi::Value AllGather(const Napi::CallbackInfo& info) {
  return Entry(info, "allGather", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    CollectiveArgs a;
    a.kind = CollectiveKind::kAllGather;
    StoragePtr x = TensorArg(info, 0, "buffer");
    if (x->dtype != DType::kFloat32) ThrowTypeError("allGather: expected a float32 buffer, got " + std::string(DTypeName(x->dtype)));
    if (x->dims.size() > 4) ThrowRangeError("allGather: expected a buffer of rank 0 to 4, got " + x->ShapeString());
    a.inputs = {x};
    a.task = Describe("allGather", {x.get()});
    return Started(info.Env(), backend, a);
  });
}

// barrier() -> { ticket, outputs: [] }
Napi::Value Barrier(const Napi::CallbackInfo& info) {
  return Entry(info, "barrier", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    CollectiveArgs a;
    a.kind = CollectiveKind::kBarrier;
    a.task = "barrier";
    return Started(info.Env(), backend, a);
  });
}

// collectiveWait(ticket): ops enqueued afterwards may read the collective's outputs.
Napi::Value CollectiveWait(const Napi::CallbackInfo& info) {
  return Entry(info, "collectiveWait", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    const int64_t ticket = IntArg(info, 0, "ticket");
    if (ticket < 0) ThrowRangeError("collectiveWait: unknown ticket " + std::to_string(ticket));
    Ctx(info.Env()).RefuseInCapture("collectiveWait", "waiting for a collective");
    backend.CollectiveWait(uint64_t(ticket));
    return info.Env().Undefined();
  });
}

}  // namespace cr::ops
