// 2-D convolution on cuDNN: forward (with or without bias), backward data, backward weights.
//
// Cost model: building descriptors and asking cuDNN's heuristics for a ranking of algorithms
// costs tens of microseconds; a ResNet meets a few dozen distinct shapes. Both are done once per
// shape (and TF32 setting), on the worker the first time the shape runs, and cached in a plan.
// Each direction then runs with the first ranked algorithm that works, PyTorch's way: every
// candidate with the math type it was ranked with (cuDNN chooses tensor-core kernels by algorithm
// and math type together), passing over one whose workspace query or call fails
// (NOT_SUPPORTED for that math type), whose workspace is above the cap or cannot be allocated,
// and remembering the one that ran. The heuristics (cudnnGet*Algorithm_v7) are the default;
// CUDNN_RESNET_BENCHMARK=1 ranks by measuring instead (cudnnFind*AlgorithmEx, once per shape,
// like torch.backends.cudnn.benchmark). CUDNN_RESNET_CONV_LOG=<file> (or `stderr`) logs each
// choice, so that a result near a tolerance can be traced to its algorithm (FFT and Winograd
// round differently from the GEMM-like ones). float32 tensors are plain NCHW; bfloat16 and float16
// ones are NHWC (weights OHWI), the layout cuDNN's tensor-core kernels read without a transpose,
// with float accumulation (the convolution descriptor's compute type) and tensor-op math.
//
// cuDNN 9 marks these classic calls deprecated in favour of the graph API; they remain, take
// NHWC half precision too, and are all these paths need. This file is the one place to replace.
#include "conv2d.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace cr::cuda {

namespace {

std::string Key(const ConvPlanKey& k) {
  std::string key = "conv;" + std::to_string(int(k.dtype)) + ';';
  for (const auto* v : {&k.g.x, &k.g.w, &k.g.stride, &k.g.padding, &k.g.dilation}) AppendInts(key, *v);
  return key + std::to_string(k.g.groups) + (k.tf32 ? "t" : "f");
}

const bool kMeasure = [] {
  const char* v = std::getenv("CUDNN_RESNET_BENCHMARK");
  return v && *v && std::strcmp(v, "0") != 0;
}();

// Tensor-core math: for half precision always (it has no FMA kernels worth having), for float32
// where TF32 is allowed.
bool TensorOps(const ConvPlanKey& k) { return k.tf32 || IsHalf(k.dtype); }

const char* DirectionName(ConvDirection d) {
  return d == ConvDirection::kForward ? "forward" : d == ConvDirection::kBackwardData ? "backward data" : "backward filter";
}

// One line per choice made or changed, to the file CUDNN_RESNET_CONV_LOG names (appended, so that
// the processes of a test run share one) or to stderr.
void LogChoice(const ConvPlanKey& k, ConvDirection d, const ConvChoice& c, const ConvCandidate& chosen, size_t index) {
  static FILE* const file = [] {
    const char* path = std::getenv("CUDNN_RESNET_CONV_LOG");
    if (!path || !*path) return static_cast<FILE*>(nullptr);
    if (std::strcmp(path, "stderr") == 0) return stderr;
    return std::fopen(path, "a");
  }();
  if (!file) return;
  static std::mutex mu;
  const Conv2dGeometry& g = k.g;
  const std::string line = std::string("conv2d ") + DirectionName(d) + " x " + ShapeString(g.x) + " w " + ShapeString(g.w) +
                           " stride " + ShapeString(g.stride) + " padding " + ShapeString(g.padding) + " dilation " +
                           ShapeString(g.dilation) + " groups " + std::to_string(g.groups) + " " + DTypeName(k.dtype) + " tf32 " +
                           (k.tf32 ? "on" : "off") + ": " + ConvAlgoName(d, chosen.algo) + " (" + ConvMathName(chosen.math) +
                           " math, " + std::to_string(chosen.workspace) + "-byte workspace), candidate " +
                           std::to_string(index + 1) + " of " + std::to_string(c.candidates.size()) + " by " +
                           (c.measured ? "measurement" : "heuristics") + "\n";
  std::lock_guard<std::mutex> lock(mu);
  std::fputs(line.c_str(), file);
  std::fflush(file);
}

template <typename Perf>
std::vector<ConvRanked> Ranked(const Perf* perf, int n) {
  std::vector<ConvRanked> out;
  for (int i = 0; i < n; ++i) out.push_back({int(perf[i].algo), perf[i].status, perf[i].memory, perf[i].mathType});
  return out;
}

// What differs between the three directions: cuDNN's calls for them.
struct DirectionCalls {
  ConvDirection direction;
  // Needs little or no workspace; appended to every ranking that lacks it.
  int fallback;
  std::function<cudnnStatus_t(std::vector<ConvRanked>*)> rank;
  // cudnnFind*AlgorithmEx with the op's own buffers (it writes the op's output, which the run
  // then overwrites) and a workspace of `bytes`.
  std::function<cudnnStatus_t(void* ws, size_t bytes, std::vector<ConvRanked>*)> measure;
  std::function<cudnnStatus_t(int algo, size_t* bytes)> workspace_size;
  std::function<cudnnStatus_t(int algo, void* ws, size_t bytes)> run;
};

ConvAttempt Refused(ConvDirection d, const ConvCandidate& c, cudnnStatus_t st) {
  std::string why = std::string(ConvAlgoName(d, c.algo)) + " (" + ConvMathName(c.math) + "): " + cudnnGetErrorString(st);
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof detail);
  if (detail[0]) why += std::string(" (") + detail + ")";
  return {false, cudnnGetErrorString(st), why};
}

void Run(CudaBackend& b, const ConvPlanKey& k, ConvPlan& p, ConvChoice& c, const DirectionCalls& calls) {
  const ConvDirection d = calls.direction;
  if (c.candidates.empty()) {
    // The ranking is made with the plan's own math type (a walk may have left another one set).
    CR_CUDNN(cudnnSetConvolutionMathType(p.conv.get(), p.base_math));
    std::vector<ConvRanked> ranked;
    if (kMeasure) {
      // cudnnFind* tries every algorithm within the workspace it is given: the most we can get.
      size_t bytes = CudaBackend::WorkspaceCap();
      void* ws = nullptr;
      for (; bytes >= (size_t(1) << 20); bytes /= 2) {
        if ((ws = b.Workspace(bytes))) break;
      }
      if (!ws) bytes = 0;
      CR_CUDNN(calls.measure(ws, bytes, &ranked));
      c.measured = true;
    } else {
      CR_CUDNN(calls.rank(&ranked));
    }
    c.candidates = ConvCandidates(ranked, TensorOps(k), calls.fallback);
  }
  RunFirstWorking(
      c,
      [&](ConvCandidate& cand) -> ConvAttempt {
        cudnnStatus_t st = cudnnSetConvolutionMathType(p.conv.get(), cand.math);
        if (st == CUDNN_STATUS_SUCCESS && cand.workspace == ConvCandidate::kUnknown) {
          size_t bytes = 0;
          st = calls.workspace_size(cand.algo, &bytes);
          if (st == CUDNN_STATUS_SUCCESS) cand.workspace = bytes;
        }
        if (st != CUDNN_STATUS_SUCCESS) return Refused(d, cand, st);
        const std::string name = std::string(ConvAlgoName(d, cand.algo)) + " (" + ConvMathName(cand.math) + "): ";
        if (cand.workspace > CudaBackend::WorkspaceCap()) {
          return {false, "ERR_WORKSPACE_CAP",
                  name + std::to_string(cand.workspace) + "-byte workspace above the cap (CUDNN_RESNET_WORKSPACE_MB)"};
        }
        void* ws = cand.workspace ? b.Workspace(cand.workspace) : nullptr;
        if (cand.workspace && !ws) {
          return {false, "cudaErrorMemoryAllocation", name + "no memory for a " + std::to_string(cand.workspace) + "-byte workspace"};
        }
        st = calls.run(cand.algo, ws, cand.workspace);
        if (st != CUDNN_STATUS_SUCCESS) {
          // A launch that failed inside cuDNN may have left its error for our next launch to find.
          cudaGetLastError();
          return Refused(d, cand, st);
        }
        return {true, "", ""};
      },
      [&](const ConvCandidate& cand, size_t index) { LogChoice(k, d, c, cand, index); });
}

std::shared_ptr<ConvPlan> GetPlan(CudaBackend& b, const ConvPlanKey& k) {
  return b.Cached<ConvPlan>(Key(k), [&] { return BuildConvPlan(k); });
}

}  // namespace

std::shared_ptr<ConvPlan> BuildConvPlan(const ConvPlanKey& k) {
  const Conv2dGeometry& g = k.g;
  auto p = std::make_shared<ConvPlan>();
  SetTensor4d(p->x, g.x, k.dtype);
  SetTensor4d(p->y, g.y, k.dtype);
  SetTensor4d(p->bias, {1, g.w[0], 1, 1}, k.dtype);
  CR_CUDNN(cudnnSetFilter4dDescriptor(p->w.get(), CudnnType(k.dtype), CudnnFormat(k.dtype), int(g.w[0]), int(g.w[1]),
                                      int(g.w[2]), int(g.w[3])));
  CR_CUDNN(cudnnSetConvolution2dDescriptor(p->conv.get(), int(g.padding[0]), int(g.padding[1]), int(g.stride[0]),
                                           int(g.stride[1]), int(g.dilation[0]), int(g.dilation[1]), CUDNN_CROSS_CORRELATION,
                                           CUDNN_DATA_FLOAT));
  CR_CUDNN(cudnnSetConvolutionGroupCount(p->conv.get(), int(g.groups)));
  // FMA math keeps float32 exact to float32 rounding; the default lets cuDNN use TF32 tensor
  // cores (10-bit mantissa inputs), PyTorch's default for convolutions. Half precision always
  // runs on tensor cores, accumulating in float (the descriptor's compute type above).
  p->base_math = IsHalf(k.dtype) ? CUDNN_TENSOR_OP_MATH : k.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  CR_CUDNN(cudnnSetConvolutionMathType(p->conv.get(), p->base_math));
  return p;
}

std::vector<ConvCandidate> ConvCandidates(const std::vector<ConvRanked>& ranked, bool tensor_ops, int fallback) {
  std::vector<ConvCandidate> out;
  const auto add = [&](int algo, cudnnMathType_t math) {
    for (const ConvCandidate& c : out) {
      if (c.algo == algo && c.math == math) return;
    }
    out.push_back(ConvCandidate{algo, math, ConvCandidate::kUnknown});
  };
  // TF32 is the most precision this backend gives up: CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION lets
  // cuDNN down-convert float32 operands to FP16/BF16 for the tensor cores (a narrower exponent
  // range as well as a shorter mantissa), so a ranking entry with it runs as plain tensor-op math
  // (TF32 on float32 data) instead, or is refused by cuDNN and passed over by the walk.
  const auto math_of = [tensor_ops](cudnnMathType_t m) {
    if (!tensor_ops) return CUDNN_FMA_MATH;
    return m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION ? CUDNN_TENSOR_OP_MATH : m;
  };
  bool fallback_ranked = false;
  for (const ConvRanked& r : ranked) {
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > CudaBackend::WorkspaceCap()) continue;
    add(r.algo, math_of(r.math));
    fallback_ranked = fallback_ranked || r.algo == fallback;
  }
  if (!fallback_ranked) add(fallback, tensor_ops ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
  return out;
}

void RunFirstWorking(ConvChoice& c, const std::function<ConvAttempt(ConvCandidate&)>& attempt,
                     const std::function<void(const ConvCandidate&, size_t index)>& log) {
  const size_t n = c.candidates.size();
  std::string code, why;
  for (size_t t = 0; t < n; ++t) {
    const size_t i = (c.chosen + t) % n;
    const ConvAttempt a = attempt(c.candidates[i]);
    if (a.ran) {
      if (i != c.chosen || !c.logged) log(c.candidates[i], i);
      c.chosen = i;
      c.logged = true;
      return;
    }
    if (code.empty()) code = a.code;
    why += (why.empty() ? "" : "; ") + a.why;
  }
  Fail(code.empty() ? "ERR_NATIVE" : code, "no cuDNN algorithm ran this convolution (" + why + ")");
}

const char* ConvMathName(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH:
      return "default";
    case CUDNN_TENSOR_OP_MATH:
      return "tensor-op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
      return "tensor-op-conversion";
    case CUDNN_FMA_MATH:
      return "FMA";
  }
  return "?";
}

const char* ConvAlgoName(ConvDirection d, int algo) {
  static const char* const kForward[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT",
                                         "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
  static const char* const kData[] = {"ALGO_0", "ALGO_1", "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
  static const char* const kFilter[] = {"ALGO_0", "ALGO_1", "FFT", "ALGO_3", "WINOGRAD", "WINOGRAD_NONFUSED", "FFT_TILING"};
  static_assert(sizeof kForward / sizeof *kForward == CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  static_assert(sizeof kData / sizeof *kData == CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
  static_assert(sizeof kFilter / sizeof *kFilter == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
  const auto pick = [algo](const char* const* names, int count) { return algo >= 0 && algo < count ? names[algo] : "?"; };
  switch (d) {
    case ConvDirection::kForward:
      return pick(kForward, CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
    case ConvDirection::kBackwardData:
      return pick(kData, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
    case ConvDirection::kBackwardFilter:
      return pick(kFilter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
  }
  return "?";
}

void ConvForward(CudaBackend& b, const ConvPlanKey& k, CudaStorage& x, CudaStorage& w, CudaStorage* bias,
                 CudaStorage& y) {
  auto p = GetPlan(b, k);
  cudnnHandle_t h = b.cudnn();
  void* xp = x.Ptr();
  void* wp = w.Ptr();
  void* yp = y.Ptr();
  const auto algo = [](int a) { return cudnnConvolutionFwdAlgo_t(a); };
  Run(b, k, *p, p->fwd,
      {ConvDirection::kForward, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
       [&](std::vector<ConvRanked>* out) {
         cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
         int n = 0;
         const cudnnStatus_t st = cudnnGetConvolutionForwardAlgorithm_v7(h, p->x.get(), p->w.get(), p->conv.get(), p->y.get(),
                                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf);
         *out = Ranked(perf, n);
         return st;
       },
       [&](void* ws, size_t bytes, std::vector<ConvRanked>* out) {
         cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
         int n = 0;
         const cudnnStatus_t st =
             cudnnFindConvolutionForwardAlgorithmEx(h, p->x.get(), xp, p->w.get(), wp, p->conv.get(), p->y.get(), yp,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf, ws, bytes);
         *out = Ranked(perf, n);
         return st;
       },
       [&](int a, size_t* bytes) {
         return cudnnGetConvolutionForwardWorkspaceSize(h, p->x.get(), p->w.get(), p->conv.get(), p->y.get(), algo(a), bytes);
       },
       [&](int a, void* ws, size_t bytes) {
         return cudnnConvolutionForward(h, &kOne, p->x.get(), xp, p->w.get(), wp, p->conv.get(), algo(a), ws, bytes, &kZero,
                                        p->y.get(), yp);
       }});
  if (bias) CR_CUDNN(cudnnAddTensor(h, &kOne, p->bias.get(), bias->Ptr(), &kOne, p->y.get(), yp));
}

void ConvBackwardData(CudaBackend& b, const ConvPlanKey& k, CudaStorage& dy, CudaStorage& w, CudaStorage& dx) {
  auto p = GetPlan(b, k);
  cudnnHandle_t h = b.cudnn();
  void* dyp = dy.Ptr();
  void* wp = w.Ptr();
  void* dxp = dx.Ptr();
  const auto algo = [](int a) { return cudnnConvolutionBwdDataAlgo_t(a); };
  Run(b, k, *p, p->data,
      {ConvDirection::kBackwardData, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
       [&](std::vector<ConvRanked>* out) {
         cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
         int n = 0;
         const cudnnStatus_t st = cudnnGetConvolutionBackwardDataAlgorithm_v7(
             h, p->w.get(), p->y.get(), p->conv.get(), p->x.get(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf);
         *out = Ranked(perf, n);
         return st;
       },
       [&](void* ws, size_t bytes, std::vector<ConvRanked>* out) {
         cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
         int n = 0;
         const cudnnStatus_t st = cudnnFindConvolutionBackwardDataAlgorithmEx(
             h, p->w.get(), wp, p->y.get(), dyp, p->conv.get(), p->x.get(), dxp, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n,
             perf, ws, bytes);
         *out = Ranked(perf, n);
         return st;
       },
       [&](int a, size_t* bytes) {
         return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->w.get(), p->y.get(), p->conv.get(), p->x.get(), algo(a),
                                                             bytes);
       },
       [&](int a, void* ws, size_t bytes) {
         return cudnnConvolutionBackwardData(h, &kOne, p->w.get(), wp, p->y.get(), dyp, p->conv.get(), algo(a), ws, bytes,
                                             &kZero, p->x.get(), dxp);
       }});
}

void ConvBackwardWeights(CudaBackend& b, const ConvPlanKey& k, CudaStorage& x, CudaStorage& dy, CudaStorage& dw,
                         CudaStorage* db) {
  auto p = GetPlan(b, k);
  cudnnHandle_t h = b.cudnn();
  void* xp = x.Ptr();
  void* dyp = dy.Ptr();
  void* dwp = dw.Ptr();
  const auto algo = [](int a) { return cudnnConvolutionBwdFilterAlgo_t(a); };
  Run(b, k, *p, p->filter,
      {ConvDirection::kBackwardFilter, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
       [&](std::vector<ConvRanked>* out) {
         cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
         int n = 0;
         const cudnnStatus_t st = cudnnGetConvolutionBackwardFilterAlgorithm_v7(
             h, p->x.get(), p->y.get(), p->conv.get(), p->w.get(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf);
         *out = Ranked(perf, n);
         return st;
       },
       [&](void* ws, size_t bytes, std::vector<ConvRanked>* out) {
         cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
         int n = 0;
         const cudnnStatus_t st = cudnnFindConvolutionBackwardFilterAlgorithmEx(
             h, p->x.get(), xp, p->y.get(), dyp, p->conv.get(), p->w.get(), dwp, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n,
             perf, ws, bytes);
         *out = Ranked(perf, n);
         return st;
       },
       [&](int a, size_t* bytes) {
         return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->x.get(), p->y.get(), p->conv.get(), p->w.get(), algo(a),
                                                               bytes);
       },
       [&](int a, void* ws, size_t bytes) {
         return cudnnConvolutionBackwardFilter(h, &kOne, p->x.get(), xp, p->y.get(), dyp, p->conv.get(), algo(a), ws, bytes,
                                               &kZero, p->w.get(), dwp);
       }});
  if (db) CR_CUDNN(cudnnConvolutionBackwardBias(h, &kOne, p->y.get(), dyp, &kZero, p->bias.get(), db->Ptr()));
}

namespace {

void RequireCudnnSizes(const Conv2dGeometry& g) {
  RequireCudnnSize(g.x, "input " + ShapeString(g.x));
  RequireCudnnSize(g.w, "weight " + ShapeString(g.w));
  RequireCudnnSize(g.y, "output " + ShapeString(g.y));
}

}  // namespace

StoragePtr CudaBackend::Conv2dForward(const Conv2dForwardArgs& a) {
  RequireCudnnSizes(a.g);
  const ConvPlanKey k{a.g, a.dtype, tf32_};
  CudaStoragePtr x = Cuda(a.x), w = Cuda(a.w), bias = Cuda(a.bias), y = Alloc(a.g.y, a.dtype);
  Enqueue(a.task, [this, k, x, w, bias, y] { ConvForward(*this, k, *x, *w, bias.get(), *y); });
  return y;
}

StoragePtr CudaBackend::Conv2dBackwardData(const Conv2dBackwardDataArgs& a) {
  RequireCudnnSizes(a.g);
  const ConvPlanKey k{a.g, a.dtype, tf32_};
  CudaStoragePtr dy = Cuda(a.dy), w = Cuda(a.w), dx = Alloc(a.g.x, a.dtype);
  Enqueue(a.task, [this, k, dy, w, dx] { ConvBackwardData(*this, k, *dy, *w, *dx); });
  return dx;
}

Conv2dWeightGrads CudaBackend::Conv2dBackwardWeights(const Conv2dBackwardWeightsArgs& a) {
  RequireCudnnSizes(a.g);
  const ConvPlanKey k{a.g, a.dtype, tf32_};
  CudaStoragePtr x = Cuda(a.x), dy = Cuda(a.dy), dw = Alloc(a.g.w, a.dtype);
  CudaStoragePtr db = a.with_bias ? Alloc({a.g.w[0]}, a.dtype) : nullptr;
  Enqueue(a.task, [this, k, x, dy, dw, db] { ConvBackwardWeights(*this, k, *x, *dy, *dw, db.get()); });
  return {dw, db};
}

}  // namespace cr::cuda
