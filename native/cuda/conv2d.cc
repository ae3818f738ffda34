// 2-D convolution on cuDNN: forward (with or without bias), backward data, backward weights.
//
// Cost model: building descriptors and asking cuDNN's heuristics for an algorithm costs tens of
// microseconds; a ResNet meets a few dozen distinct shapes. Both are done once per shape (and
// TF32 setting), on the worker the first time the shape runs, and cached in a Plan. The
// heuristics (cudnnGet*Algorithm_v7) are used rather than cudnnFind*, which would run every
// algorithm on the GPU and allocate their workspaces. Algorithms wanting more workspace than the
// cap are passed over; when the workspace cannot be allocated the op falls back to an algorithm
// that needs none. Tensors are plain NCHW float32 (NHWC for tensor cores is a later step).
//
// cuDNN 9 marks these classic calls deprecated in favour of the graph API; they remain and are
// all this float32 NCHW path needs. This file is the one place to replace.
#include "conv2d.h"

namespace cr::cuda {

namespace {

struct Plan {
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  bool have_fwd = false, have_data = false, have_filter = false;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t data{};
  cudnnConvolutionBwdFilterAlgo_t filter{};
  size_t fwd_ws = 0, data_ws = 0, filter_ws = 0;
};

std::string Key(const ConvPlanKey& k) {
  std::string key = "conv;" + std::to_string(int(k.dtype)) + ';';
  for (const auto* v : {&k.g.x, &k.g.w, &k.g.stride, &k.g.padding, &k.g.dilation}) AppendInts(key, *v);
  return key + std::to_string(k.g.groups) + (k.tf32 ? "t" : "f");
}

std::shared_ptr<Plan> GetPlan(CudaBackend& b, const ConvPlanKey& k) {
  const Conv2dGeometry& g = k.g;
  const bool tf32 = k.tf32;
  return b.Cached<Plan>(Key(k), [&] {
    auto p = std::make_shared<Plan>();
    SetTensor4d(p->x, g.x, k.dtype);
    SetTensor4d(p->y, g.y, k.dtype);
    SetTensor4d(p->bias, {1, g.w[0], 1, 1}, k.dtype);
    CR_CUDNN(cudnnSetFilter4dDescriptor(p->w.get(), CudnnType(k.dtype), CUDNN_TENSOR_NCHW, int(g.w[0]), int(g.w[1]),
                                        int(g.w[2]), int(g.w[3])));
    CR_CUDNN(cudnnSetConvolution2dDescriptor(p->conv.get(), int(g.padding[0]), int(g.padding[1]), int(g.stride[0]),
                                             int(g.stride[1]), int(g.dilation[0]), int(g.dilation[1]),
                                             CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CR_CUDNN(cudnnSetConvolutionGroupCount(p->conv.get(), int(g.groups)));
    // FMA math keeps float32 exact to float32 rounding; the default lets cuDNN use TF32 tensor
    // cores (10-bit mantissa inputs), PyTorch's default for convolutions.
    CR_CUDNN(cudnnSetConvolutionMathType(p->conv.get(), tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    return p;
  });
}

// The first heuristic choice that succeeds within the workspace cap; `fallback` (which needs no
// workspace for ungrouped convolutions) when none does. The caller then asks cuDNN for the chosen
// algorithm's exact workspace size rather than trusting the heuristic's estimate.
template <typename Perf, typename Algo>
void Choose(const Perf* perf, int n, Algo fallback, Algo* algo, size_t* ws) {
  for (int i = 0; i < n; ++i) {
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= CudaBackend::WorkspaceCap()) {
      *algo = perf[i].algo;
      *ws = perf[i].memory;
      return;
    }
  }
  *algo = fallback;
  *ws = 0;
}

// A workspace for `bytes`; when it cannot be had, switches to `fallback` and the workspace
// that one needs (normally none).
template <typename Algo, typename SizeOf>
void* Workspace(CudaBackend& b, Algo* algo, size_t* bytes, Algo fallback, SizeOf size_of) {
  if (*bytes == 0) return nullptr;
  if (void* ws = b.Workspace(*bytes)) return ws;
  *algo = fallback;
  *bytes = size_of(fallback);
  if (*bytes == 0) return nullptr;
  void* ws = b.Workspace(*bytes);
  if (!ws) Fail("cudaErrorMemoryAllocation", "no memory for a " + std::to_string(*bytes) + "-byte convolution workspace");
  return ws;
}

}  // namespace

void ConvForward(CudaBackend& b, const ConvPlanKey& k, CudaStorage& x, CudaStorage& w, CudaStorage* bias,
                 CudaStorage& y) {
  auto p = GetPlan(b, k);
  cudnnHandle_t h = b.cudnn();
  auto size_of = [&](cudnnConvolutionFwdAlgo_t a) {
    size_t s = 0;
    CR_CUDNN(cudnnGetConvolutionForwardWorkspaceSize(h, p->x.get(), p->w.get(), p->conv.get(), p->y.get(), a, &s));
    return s;
  };
  if (!p->have_fwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0;
    CR_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(h, p->x.get(), p->w.get(), p->conv.get(), p->y.get(),
                                                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
    Choose(perf, n, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, &p->fwd, &p->fwd_ws);
    p->fwd_ws = size_of(p->fwd);
    p->have_fwd = true;
  }
  cudnnConvolutionFwdAlgo_t algo = p->fwd;
  size_t bytes = p->fwd_ws;
  void* ws = Workspace(b, &algo, &bytes, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, size_of);
  CR_CUDNN(cudnnConvolutionForward(h, &kOne, p->x.get(), x.Ptr(), p->w.get(), w.Ptr(), p->conv.get(), algo, ws, bytes,
                                   &kZero, p->y.get(), y.Ptr()));
  if (bias) CR_CUDNN(cudnnAddTensor(h, &kOne, p->bias.get(), bias->Ptr(), &kOne, p->y.get(), y.Ptr()));
}

void ConvBackwardData(CudaBackend& b, const ConvPlanKey& k, CudaStorage& dy, CudaStorage& w, CudaStorage& dx) {
  auto p = GetPlan(b, k);
  cudnnHandle_t h = b.cudnn();
  auto size_of = [&](cudnnConvolutionBwdDataAlgo_t a) {
    size_t s = 0;
    CR_CUDNN(cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->w.get(), p->y.get(), p->conv.get(), p->x.get(), a, &s));
    return s;
  };
  if (!p->have_data) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int n = 0;
    CR_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->w.get(), p->y.get(), p->conv.get(), p->x.get(),
                                                         CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
    Choose(perf, n, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, &p->data, &p->data_ws);
    p->data_ws = size_of(p->data);
    p->have_data = true;
  }
  cudnnConvolutionBwdDataAlgo_t algo = p->data;
  size_t bytes = p->data_ws;
  void* ws = Workspace(b, &algo, &bytes, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, size_of);
  CR_CUDNN(cudnnConvolutionBackwardData(h, &kOne, p->w.get(), w.Ptr(), p->y.get(), dy.Ptr(), p->conv.get(), algo, ws,
                                        bytes, &kZero, p->x.get(), dx.Ptr()));
}

void ConvBackwardWeights(CudaBackend& b, const ConvPlanKey& k, CudaStorage& x, CudaStorage& dy, CudaStorage& dw,
                         CudaStorage* db) {
  auto p = GetPlan(b, k);
  cudnnHandle_t h = b.cudnn();
  auto size_of = [&](cudnnConvolutionBwdFilterAlgo_t a) {
    size_t s = 0;
    CR_CUDNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->x.get(), p->y.get(), p->conv.get(), p->w.get(), a, &s));
    return s;
  };
  if (!p->have_filter) {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int n = 0;
    CR_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->x.get(), p->y.get(), p->conv.get(), p->w.get(),
                                                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
    Choose(perf, n, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, &p->filter, &p->filter_ws);
    p->filter_ws = size_of(p->filter);
    p->have_filter = true;
  }
  cudnnConvolutionBwdFilterAlgo_t algo = p->filter;
  size_t bytes = p->filter_ws;
  void* ws = Workspace(b, &algo, &bytes, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, size_of);
  CR_CUDNN(cudnnConvolutionBackwardFilter(h, &kOne, p->x.get(), x.Ptr(), p->y.get(), dy.Ptr(), p->conv.get(), algo, ws,
                                          bytes, &kZero, p->w.get(), dw.Ptr()));
  if (db) CR_CUDNN(cudnnConvolutionBackwardBias(h, &kOne, p->y.get(), dy.Ptr(), &kZero, p->bias.get(), db->Ptr()));
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
