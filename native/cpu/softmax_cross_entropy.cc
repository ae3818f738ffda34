// Mean softmax cross-entropy with label smoothing (PyTorch's CrossEntropyLoss semantics), as
// plain loops: the logits are [N, classes], far too small for a oneDNN primitive to pay off,
// and the loss needs double accumulation that oneDNN's softmax would not give.
#include <cmath>

#include "cpu_context.h"
#include "ops.h"

namespace cr::cpu {

namespace {

// Below this many logits a parallel region costs more than it saves.
constexpr int64_t kParallelMin = int64_t(1) << 15;

// Runs on the worker, before any output is written, so a bad label fails the op instead of
// indexing out of bounds.
void CheckLabels(const int32_t* labels, int64_t n, int64_t k) {
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] < 0 || labels[i] >= k) {
      Fail("ERR_LABEL_OUT_OF_RANGE", "label " + std::to_string(labels[i]) + " at row " + std::to_string(i) +
                                         " is outside [0, " + std::to_string(k) + ")");
    }
  }
}

// softmaxCrossEntropyForward(logits, labels, labelSmoothing) -> [loss, probs]
Napi::Value Forward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "softmaxCrossEntropy", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr logits = Arg(env, info[0], "logits");
    CpuStoragePtr labels = Arg(env, info[1], "labels");
    auto [n, k] = ReadScoresAndLabels(env, *logits, "logits", *labels);
    double eps = LabelSmoothingArg(info, 2);
    CpuStoragePtr xs = InLayout(ctx, logits, PlainDesc(logits->dims, DType::kFloat32));
    CpuStoragePtr ls = InLayout(ctx, labels, PlainDesc(labels->dims, DType::kInt32));
    CpuStoragePtr loss = Alloc({}, DType::kFloat32, PlainDesc({}, DType::kFloat32));
    CpuStoragePtr probs = Alloc(logits->dims, DType::kFloat32, PlainDesc(logits->dims, DType::kFloat32));
    ctx.queue.Push(Describe("softmaxCrossEntropy", {logits.get(), labels.get()}), [xs, ls, loss, probs, n = n, k = k, eps] {
      const float* x = static_cast<const float*>(xs->data);
      const int32_t* y = static_cast<const int32_t*>(ls->data);
      float* p = static_cast<float*>(probs->data);
      CheckLabels(y, n, k);
      const double on = 1.0 - eps, off = eps / double(k);
      double total = 0;
#pragma omp parallel for reduction(+ : total) if (n * k >= kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        const float* row = x + i * k;
        float* prow = p + i * k;
        double max = row[0];
        for (int64_t j = 1; j < k; ++j) max = std::fmax(max, double(row[j]));
        double sum = 0;
        for (int64_t j = 0; j < k; ++j) sum += std::exp(double(row[j]) - max);
        const double lse = max + std::log(sum);
        // -sum_j q_j log p_j with -log p_j = lse - x_j and q = on·onehot + off.
        double nll_sum = 0;
        for (int64_t j = 0; j < k; ++j) {
          const double nll = lse - double(row[j]);
          prow[j] = float(std::exp(-nll));
          nll_sum += nll;
        }
        total += on * (lse - double(row[y[i]])) + off * nll_sum;
      }
      *static_cast<float*>(loss->data) = float(total / double(n));
    });
    return Tuple(env, {WrapStorage(env, loss), WrapStorage(env, probs)});
  });
}

// softmaxCrossEntropyBackward(probs, labels, labelSmoothing, dloss) -> dlogits
Napi::Value Backward(const Napi::CallbackInfo& info) {
  return Guard(info, "cpu", "softmaxCrossEntropyBackward", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CpuContext& ctx = Ctx(env);
    CpuStoragePtr probs = Arg(env, info[0], "probabilities");
    CpuStoragePtr labels = Arg(env, info[1], "labels");
    auto [n, k] = ReadScoresAndLabels(env, *probs, "probabilities", *labels);
    double eps = LabelSmoothingArg(info, 2);
    CpuStoragePtr dloss = Arg(env, info[3], "loss gradient");
    CheckLossGradient(env, *dloss);
    CpuStoragePtr ps = InLayout(ctx, probs, PlainDesc(probs->dims, DType::kFloat32));
    CpuStoragePtr ls = InLayout(ctx, labels, PlainDesc(labels->dims, DType::kInt32));
    CpuStoragePtr dx = Alloc(probs->dims, DType::kFloat32, PlainDesc(probs->dims, DType::kFloat32));
    ctx.queue.Push(Describe("softmaxCrossEntropyBackward", {probs.get(), labels.get()}),
                   [ps, ls, dloss, dx, n = n, k = k, eps] {
      const float* p = static_cast<const float*>(ps->data);
      const int32_t* y = static_cast<const int32_t*>(ls->data);
      float* d = static_cast<float*>(dx->data);
      CheckLabels(y, n, k);
      const double scale = double(*static_cast<const float*>(dloss->data)) / double(n);
      const double off = eps / double(k), on = 1.0 - eps + off;
#pragma omp parallel for if (n * k >= kParallelMin)
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < k; ++j) d[i * k + j] = float((double(p[i * k + j]) - off) * scale);
        d[i * k + y[i]] = float((double(p[i * k + y[i]]) - on) * scale);
      }
    });
    return WrapStorage(env, dx);
  });
}

}  // namespace

void RegisterSoftmaxCrossEntropy(Napi::Env env, Napi::Object exports) {
  exports.Set("softmaxCrossEntropyForward", Napi::Function::New(env, Forward, "softmaxCrossEntropyForward"));
  exports.Set("softmaxCrossEntropyBackward", Napi::Function::New(env, Backward, "softmaxCrossEntropyBackward"));
}

}  // namespace cr::cpu
