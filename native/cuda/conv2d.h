// The cuDNN convolution calls, shared by conv2d.cc and linear.cc (a linear layer is a 1x1
// convolution of [N, in, 1, 1], which spares a dependency on cuBLAS), and the parts of their
// planning that run without a GPU, which host_checks.cc tests.
#pragma once

#include <functional>

#include "cuda_backend.h"

namespace cr::cuda {

struct ConvPlanKey {
  Conv2dGeometry g;
  DType dtype = DType::kFloat32;
  // TF32 tensor-core math allowed for float32; read when the op is enqueued, so that setTf32()
  // applies exactly to the ops enqueued after it. Half precision uses tensor cores regardless.
  bool tf32 = false;
};

// One algorithm cuDNN may run a convolution direction with.
struct ConvCandidate {
  // A cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t.
  int algo = 0;
  cudnnMathType_t math = CUDNN_FMA_MATH;
  // Bytes, once cuDNN was asked for this algorithm and math type (kUnknown before).
  size_t workspace = kUnknown;
  static constexpr size_t kUnknown = ~size_t(0);
};

enum class ConvDirection { kForward, kBackwardData, kBackwardFilter };

// The candidates of one direction, best first, and the one that ran last.
struct ConvChoice {
  std::vector<ConvCandidate> candidates;
  size_t chosen = 0;
  // Whether `candidates` came from cudnnFind* (CUDNN_RESNET_BENCHMARK=1) rather than heuristics.
  bool measured = false;
  // Whether the choice was logged (CUDNN_RESNET_CONV_LOG).
  bool logged = false;
};

// The descriptors of a convolution and its choices, cached per key (shape, type, TF32).
struct ConvPlan {
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  // The math type the heuristics rank with: float32 with TF32 tensor cores allowed or not (FMA);
  // tensor-op for half precision.
  cudnnMathType_t base_math = CUDNN_FMA_MATH;
  ConvChoice fwd, data, filter;
};

// The descriptors of `k` (host calls only: no GPU).
std::shared_ptr<ConvPlan> BuildConvPlan(const ConvPlanKey& k);

// One ranking entry of cuDNN's (a cudnnConvolution*AlgoPerf_t's fields that matter here).
struct ConvRanked {
  int algo;
  cudnnStatus_t status;
  size_t memory;
  cudnnMathType_t math;
};

// The candidates of a ranking, best first: the entries cuDNN reports as runnable within the
// workspace cap, each with the math type it was ranked with (PyTorch does the same: cuDNN picks
// tensor-core kernels by algorithm and math type together), except that without tensor ops
// (float32 with TF32 off) every one runs in FMA math, so that TF32 is never used where it is off,
// and with them a ranking's tensor-op-with-conversion (FP16/BF16 down-conversion) runs as
// tensor-op; then `fallback`, which needs little or no workspace, if the ranking lacks it.
std::vector<ConvCandidate> ConvCandidates(const std::vector<ConvRanked>& ranked, bool tensor_ops, int fallback);

// The outcome of trying one candidate: ran, or why not (a cuDNN status name or a workspace
// problem, and a message).
struct ConvAttempt {
  bool ran = false;
  std::string code, why;
};

// Runs a direction with the first candidate that works, starting from the one that worked last
// and going round the list, and remembers it: a shape whose chosen algorithm stops working
// (NOT_SUPPORTED for a math type, a workspace that cannot be had) moves to the next one instead
// of failing for good. `attempt` tries one candidate; `log` is told when the choice changes.
// Throws the first failure's code when none runs.
void RunFirstWorking(ConvChoice& c, const std::function<ConvAttempt(ConvCandidate&)>& attempt,
                     const std::function<void(const ConvCandidate&, size_t index)>& log);

// The algorithm's name, e.g. "IMPLICIT_PRECOMP_GEMM".
const char* ConvAlgoName(ConvDirection d, int algo);
// The math type's name: "default", "tensor-op", "tensor-op-conversion" or "FMA".
const char* ConvMathName(cudnnMathType_t m);

// Run on the worker. `bias`, `db` may be null.
void ConvForward(CudaBackend& b, const ConvPlanKey& k, CudaStorage& x, CudaStorage& w, CudaStorage* bias, CudaStorage& y);
void ConvBackwardData(CudaBackend& b, const ConvPlanKey& k, CudaStorage& dy, CudaStorage& w, CudaStorage& dx);
void ConvBackwardWeights(CudaBackend& b, const ConvPlanKey& k, CudaStorage& x, CudaStorage& dy, CudaStorage& dw,
                         CudaStorage* db);

}  // namespace cr::cuda
