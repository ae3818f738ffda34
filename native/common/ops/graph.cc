// The entry points of captured steps (lib/train/capture.ts): the capture of a whole training step
// into a CUDA graph and its replays, and copyInto, which refills the step's static inputs.
//
// The front end owns the capture's JS-side state (Context::capturing): it refuses a second
// captureBegin, and records what was refused in between (Context::RefuseInCapture) so that
// captureEnd reports it instead of making a graph of a step that lacks part of its work. A
// backend without graphs refuses with the defaults below.
#include "../args.h"
#include "../context.h"
#include "registry.h"

namespace cr {

namespace {

[[noreturn]] void NoGraphs() {
  Fail("ERR_UNSUPPORTED", std::string("the ") + OpScope::CurrentBackend() +
                              " backend has no graphs; train.captureStep runs its step eagerly there");
}

}  // namespace

uint64_t Backend::CaptureBegin() { NoGraphs(); }
void Backend::CaptureEnd(bool) { NoGraphs(); }
void Backend::GraphLaunch(uint64_t) { NoGraphs(); }
void Backend::GraphRelease(uint64_t) {}
GraphStatus Backend::GraphStatusOf(uint64_t) { return {false, "this backend has no graphs"}; }

namespace ops {

namespace {

uint64_t GraphIdArg(const Napi::CallbackInfo& info, const char* op) {
  const int64_t id = IntArg(info, 0, "graph id");
  if (id < 1) ThrowRangeError(std::string(op) + ": expected a graph id from captureEnd, got " + std::to_string(id));
  return uint64_t(id);
}

}  // namespace

// captureBegin() -> graph id: starts recording the ops enqueued from now on into that graph,
// instead of running them; captureEnd or captureAbort must follow before anything waits.
Napi::Value CaptureBegin(const Napi::CallbackInfo& info) {
  return Entry(info, "captureBegin", [&]() -> Napi::Value {
    Context& ctx = Ctx(info.Env());
    Backend& backend = ctx.backend();
    if (ctx.capturing) Fail("ERR_CAPTURE_OPEN", "a capture is already open; end it with captureEnd or captureAbort first");
    const uint64_t id = backend.CaptureBegin();
    ctx.capturing = true;
    ctx.capture_refusal.clear();
    return Napi::Number::New(info.Env(), double(id));
  });
}

// captureEnd(): the graph of everything enqueued since captureBegin is made, to replay with
// graphLaunch. It has not run: the caller launches it once for the values of this step. Throws
// what was refused during the capture (the capture is then discarded).
Napi::Value CaptureEnd(const Napi::CallbackInfo& info) {
  return Entry(info, "captureEnd", [&]() -> Napi::Value {
    Context& ctx = Ctx(info.Env());
    Backend& backend = ctx.backend();
    if (!ctx.capturing) Fail("ERR_CAPTURE_OPEN", "no capture is open (captureBegin first)");
    const std::string refused = ctx.capture_refusal;
    ctx.capturing = false;
    ctx.capture_refusal.clear();
    backend.CaptureEnd(refused.empty());
    if (!refused.empty()) Fail("ERR_CAPTURE_REFUSED", "the capture was abandoned: " + refused);
    return info.Env().Undefined();
  });
}

// captureAbort(): discards the open capture, if any (after a step that threw).
Napi::Value CaptureAbort(const Napi::CallbackInfo& info) {
  return Entry(info, "captureAbort", [&]() -> Napi::Value {
    Context& ctx = Ctx(info.Env());
    if (!ctx.capturing) return info.Env().Undefined();
    ctx.capturing = false;
    ctx.capture_refusal.clear();
    ctx.backend().CaptureEnd(false);
    return info.Env().Undefined();
  });
}

// graphLaunch(id): enqueues a replay.
Napi::Value GraphLaunch(const Napi::CallbackInfo& info) {
  return Entry(info, "graphLaunch", [&]() -> Napi::Value {
    Context& ctx = Ctx(info.Env());
    const uint64_t id = GraphIdArg(info, "graphLaunch");
    ctx.RefuseInCapture("graphLaunch", "a graph launch");
    ctx.backend().GraphLaunch(id);
    return info.Env().Undefined();
  });
}

// graphRelease(id): the graph goes once the replays already enqueued have run, and with it the
// buffers it kept alive.
Napi::Value GraphRelease(const Napi::CallbackInfo& info) {
  return Entry(info, "graphRelease", [&]() -> Napi::Value {
    const uint64_t id = GraphIdArg(info, "graphRelease");
    Ctx(info.Env()).backend_unchecked().GraphRelease(id);
    return info.Env().Undefined();
  });
}

// graphStatus(id) -> { ready, failure }: never waits.
Napi::Value GraphStatus(const Napi::CallbackInfo& info) {
  return Entry(info, "graphStatus", [&]() -> Napi::Value {
    const uint64_t id = GraphIdArg(info, "graphStatus");
    const cr::GraphStatus s = Ctx(info.Env()).backend_unchecked().GraphStatusOf(id);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("ready", Napi::Boolean::New(info.Env(), s.ready));
    o.Set("failure", s.failure.empty() ? info.Env().Null() : Napi::Value(Napi::String::New(info.Env(), s.failure)));
    return o;
  });
}

// copyInto(dst, src): dst's values replaced by src's, in queue order.
Napi::Value CopyInto(const Napi::CallbackInfo& info) {
  return Entry(info, "copyInto", [&]() -> Napi::Value {
    Backend& backend = Ctx(info.Env()).backend();
    CopyIntoArgs a;
    a.dst = TensorArg(info, 0, "dst");
    a.src = TensorArg(info, 1, "src");
    if (a.dst->dims != a.src->dims || a.dst->dtype != a.src->dtype) {
      ThrowRangeError("copyInto: dst is " + std::string(DTypeName(a.dst->dtype)) + " " + a.dst->ShapeString() + " but src is " +
                      DTypeName(a.src->dtype) + " " + a.src->ShapeString());
    }
    a.dtype = a.dst->dtype;
    a.task = Describe("copyInto", {a.dst.get(), a.src.get()});
    if (a.dst != a.src) backend.CopyInto(a);
    return info.Env().Undefined();
  });
}

}  // namespace ops
}  // namespace cr
