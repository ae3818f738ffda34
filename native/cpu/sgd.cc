// SGD with momentum, Nesterov and weight decay over all parameters in one queued task: a
// ResNet has hundreds of small parameters (batch-norm vectors), and one task per parameter
// would cost more in queueing than in arithmetic.
#include "cpu_context.h"
#include "ops.h"

namespace cr::cpu {

namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelMin = int64_t(1) << 15;

std::vector<CpuStoragePtr> BufferList(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsArray()) {
    throw Napi::TypeError::New(env, OpScope::CurrentOp() + ": expected " + what + " to be an array of buffers");
  }
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<CpuStoragePtr> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) out.push_back(Arg(env, a.Get(k), what));
  return out;
}

struct Slot {
  CpuStoragePtr param, grad, buf;
};

// sgdStep(params, grads, momentumBuffers, lr, momentum, weightDecay, nesterov, firstStep)
Napi::Value Step(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "sgdStep", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    std::vector<CpuStoragePtr> params = BufferList(info, 0, "params");
    std::vector<CpuStoragePtr> grads = BufferList(info, 1, "grads");
    std::vector<CpuStoragePtr> bufs = BufferList(info, 2, "momentumBuffers");
    const float lr = float(NumberArg(info, 3, "lr"));
    const float momentum = float(NumberArg(info, 4, "momentum"));
    const float wd = float(NumberArg(info, 5, "weightDecay"));
    const bool nesterov = BoolArg(info, 6, "nesterov");
    const bool first = BoolArg(info, 7, "firstStep");
    const bool use_bufs = momentum != 0;
    CheckSgdBuffers(env, params, grads, bufs, momentum);

    std::vector<Slot> slots;
    slots.reserve(params.size());
    // Momentum buffers in another layout are updated in a copy that is written back after the
    // step, since the update is in place.
    std::vector<std::pair<CpuStoragePtr, CpuStoragePtr>> write_back;
    for (size_t i = 0; i < params.size(); ++i) {
      const Desc& md = params[i]->md;
      Slot s{params[i], InLayout(ctx, grads[i], md), nullptr};
      if (use_bufs) {
        s.buf = InLayout(ctx, bufs[i], md);
        if (s.buf != bufs[i]) write_back.emplace_back(s.buf, bufs[i]);
      }
      slots.push_back(std::move(s));
    }
    ctx.queue.Push("sgdStep (" + std::to_string(params.size()) + " parameters)",
                   [slots = std::move(slots), lr, momentum, wd, nesterov, first] {
      for (const Slot& s : slots) {
        float* p = static_cast<float*>(s.param->data);
        const float* g = static_cast<const float*>(s.grad->data);
        float* b = s.buf ? static_cast<float*>(s.buf->data) : nullptr;
        // Blocked layouts pad; all three share the layout, so the padding is updated alike
        // and never read.
        const int64_t n = int64_t(s.param->md.get_size() / sizeof(float));
#pragma omp parallel for if (n >= kParallelMin)
        for (int64_t i = 0; i < n; ++i) {
          float d = wd != 0 ? g[i] + wd * p[i] : g[i];
          if (b) {
            const float v = first ? d : momentum * b[i] + d;
            b[i] = v;
            d = nesterov ? d + momentum * v : v;
          }
          p[i] -= lr * d;
        }
      }
    });
    for (const auto& [copy, buf] : write_back) EnqueueReorder(ctx, copy, copy->md, buf, buf->md);
    return env.Undefined();
  });
}

}  // namespace

void RegisterSgd(Napi::Env env, Napi::Object exports) {
  exports.Set("sgdStep", Napi::Function::New(env, Step, "sgdStep"));
}

}  // namespace cr::cpu
