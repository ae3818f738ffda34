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

#include "ops.h"

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

std::string Key(const ConvGeometry& g, bool tf32) {
  std::string k = "conv;";
  for (const auto* v : {&g.x, &g.w, &g.stride, &g.padding, &g.dilation}) {
    for (int64_t d : *v) k += std::to_string(d) + ',';
    k += ';';
  }
  return k + std::to_string(g.groups) + (tf32 ? "t" : "f");
}

std::shared_ptr<Plan> GetPlan(CudaContext& ctx, const ConvGeometry& g) {
  const bool tf32 = g.tf32;
  return ctx.Plan<Plan>(Key(g, tf32), [&] {
    auto p = std::make_shared<Plan>();
    SetTensor4d(p->x, g.x);
    SetTensor4d(p->y, g.y);
    SetTensor4d(p->bias, {1, g.w[0], 1, 1});
    CR_CUDNN(cudnnSetFilter4dDescriptor(p->w.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, int(g.w[0]), int(g.w[1]),
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
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= CudaContext::WorkspaceCap()) {
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
void* Workspace(CudaContext& ctx, Algo* algo, size_t* bytes, Algo fallback, SizeOf size_of) {
  if (*bytes == 0) return nullptr;
  if (void* ws = ctx.Workspace(*bytes)) return ws;
  *algo = fallback;
  *bytes = size_of(fallback);
  if (*bytes == 0) return nullptr;
  void* ws = ctx.Workspace(*bytes);
  if (!ws) Fail("cudaErrorMemoryAllocation", "no memory for a " + std::to_string(*bytes) + "-byte convolution workspace");
  return ws;
}

}  // namespace

void ConvForward(CudaContext& ctx, const ConvGeometry& g, CudaStorage& x, CudaStorage& w, CudaStorage* bias,
                 CudaStorage& y) {
  auto p = GetPlan(ctx, g);
  cudnnHandle_t h = ctx.device->cudnn;
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
  void* ws = Workspace(ctx, &algo, &bytes, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, size_of);
  CR_CUDNN(cudnnConvolutionForward(h, &kOne, p->x.get(), x.Ptr(), p->w.get(), w.Ptr(), p->conv.get(), algo, ws, bytes,
                                   &kZero, p->y.get(), y.Ptr()));
  if (bias) CR_CUDNN(cudnnAddTensor(h, &kOne, p->bias.get(), bias->Ptr(), &kOne, p->y.get(), y.Ptr()));
}

void ConvBackwardData(CudaContext& ctx, const ConvGeometry& g, CudaStorage& dy, CudaStorage& w, CudaStorage& dx) {
  auto p = GetPlan(ctx, g);
  cudnnHandle_t h = ctx.device->cudnn;
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
  void* ws = Workspace(ctx, &algo, &bytes, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, size_of);
  CR_CUDNN(cudnnConvolutionBackwardData(h, &kOne, p->w.get(), w.Ptr(), p->y.get(), dy.Ptr(), p->conv.get(), algo, ws,
                                        bytes, &kZero, p->x.get(), dx.Ptr()));
}

void ConvBackwardWeights(CudaContext& ctx, const ConvGeometry& g, CudaStorage& x, CudaStorage& dy, CudaStorage& dw,
                         CudaStorage* db) {
  auto p = GetPlan(ctx, g);
  cudnnHandle_t h = ctx.device->cudnn;
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
  void* ws = Workspace(ctx, &algo, &bytes, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, size_of);
  CR_CUDNN(cudnnConvolutionBackwardFilter(h, &kOne, p->x.get(), x.Ptr(), p->y.get(), dy.Ptr(), p->conv.get(), algo, ws,
                                          bytes, &kZero, p->w.get(), dw.Ptr()));
  if (db) CR_CUDNN(cudnnConvolutionBackwardBias(h, &kOne, p->y.get(), dy.Ptr(), &kZero, p->bias.get(), db->Ptr()));
}

namespace {

// Reads and checks the geometry arguments shared by the three entry points, starting at `i`.
ConvGeometry ReadParams(const Napi::CallbackInfo& info, size_t i, const std::vector<int64_t>& x,
                        const std::vector<int64_t>& w) {
  ConvGeometry g;
  g.x = x;
  g.w = w;
  g.stride = IntsArg(info, i, "stride", 2);
  g.padding = IntsArg(info, i + 1, "padding", 2);
  g.dilation = IntsArg(info, i + 2, "dilation", 2);
  g.groups = IntArg(info, i + 3, "groups");
  g.tf32 = AnyCtx(info.Env()).tf32;
  auto bad = [&](const std::string& why) {
    throw Napi::RangeError::New(info.Env(), "conv2d: " + why + " (input " + ShapeString(x) + ", weight " + ShapeString(w) + ")");
  };
  if (x.size() != 4 || w.size() != 4) bad("expected 4-D input and weight");
  for (int64_t d : x) {
    if (d < 1) bad("input dimensions must be positive");
  }
  for (int k = 0; k < 2; ++k) {
    if (g.stride[k] < 1 || g.dilation[k] < 1 || g.padding[k] < 0) bad("stride and dilation must be >= 1, padding >= 0");
  }
  if (g.groups < 1 || x[1] % g.groups != 0 || w[0] % g.groups != 0 || w[1] * g.groups != x[1]) {
    bad("channels do not match groups = " + std::to_string(g.groups));
  }
  for (int64_t d : w) {
    if (d < 1) bad("weight dimensions must be positive");
  }
  g.y = ConvOutputDims(x, w, g.stride, g.padding, g.dilation);
  if (g.y[2] < 1 || g.y[3] < 1) bad("the kernel does not fit the padded input");
  // cuDNN's descriptors take int dimensions and strides. CheckedNumel first: the plain product
  // of the output's dims (a huge padding, many filters) could overflow int64.
  if (CheckedNumel(info.Env(), x) > INT32_MAX || CheckedNumel(info.Env(), w) > INT32_MAX ||
      CheckedNumel(info.Env(), g.y) > INT32_MAX) {
    bad("tensors above 2^31 elements are not supported by cuDNN's 4-D descriptors");
  }
  return g;
}

// conv2dForward(x, w, bias | null, stride, padding, dilation, groups) -> y
Napi::Value Forward(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "conv2d", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Arg(env, info[0], "input");
    CudaStoragePtr w = Arg(env, info[1], "weight");
    CudaStoragePtr b = OptionalArg(env, info[2], "bias");
    RequireFloat(env, *x, "input");
    RequireFloat(env, *w, "weight");
    ConvGeometry g = ReadParams(info, 3, x->dims, w->dims);
    if (b) {
      RequireFloat(env, *b, "bias");
      if (b->dims.size() != 1 || b->dims[0] != w->dims[0]) {
        throw Napi::RangeError::New(env, "conv2d: bias must have shape [" + std::to_string(w->dims[0]) + "], got " + b->ShapeString());
      }
    }
    CudaStoragePtr y = Alloc(ctx, g.y);
    Enqueue(ctx, Describe("conv2d", {x.get(), w.get()}), [&ctx, g, x, w, b, y] { ConvForward(ctx, g, *x, *w, b.get(), *y); });
    return WrapStorage(env, y);
  });
}

// conv2dBackwardData(dy, w, xShape, stride, padding, dilation, groups) -> dx
Napi::Value BackwardData(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "conv2dBackwardData", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr dy = Arg(env, info[0], "gradient");
    CudaStoragePtr w = Arg(env, info[1], "weight");
    RequireFloat(env, *dy, "gradient");
    RequireFloat(env, *w, "weight");
    std::vector<int64_t> xdims = IntsArg(info, 2, "input shape", 4);
    ConvGeometry g = ReadParams(info, 3, xdims, w->dims);
    if (dy->dims != g.y) {
      throw Napi::RangeError::New(env, "conv2dBackwardData: gradient of shape " + dy->ShapeString() + " does not match output " + ShapeString(g.y));
    }
    CudaStoragePtr dx = Alloc(ctx, g.x);
    Enqueue(ctx, Describe("conv2dBackwardData", {dy.get(), w.get()}), [&ctx, g, dy, w, dx] { ConvBackwardData(ctx, g, *dy, *w, *dx); });
    return WrapStorage(env, dx);
  });
}

// conv2dBackwardWeights(x, dy, wShape, withBias, stride, padding, dilation, groups) -> [dw, db | null]
Napi::Value BackwardWeights(const Napi::CallbackInfo& info) {
  return Guard(info, "cuda", "conv2dBackwardWeights", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    CudaContext& ctx = Live(env);
    CudaStoragePtr x = Arg(env, info[0], "input");
    CudaStoragePtr dy = Arg(env, info[1], "gradient");
    RequireFloat(env, *x, "input");
    RequireFloat(env, *dy, "gradient");
    std::vector<int64_t> wdims = IntsArg(info, 2, "weight shape", 4);
    bool with_bias = BoolArg(info, 3, "withBias");
    for (int64_t d : wdims) {
      if (d < 1) throw Napi::RangeError::New(env, "conv2dBackwardWeights: weight dimensions must be positive, got " + ShapeString(wdims));
    }
    ConvGeometry g = ReadParams(info, 4, x->dims, wdims);
    if (dy->dims != g.y) {
      throw Napi::RangeError::New(env, "conv2dBackwardWeights: gradient of shape " + dy->ShapeString() + " does not match output " + ShapeString(g.y));
    }
    CudaStoragePtr dw = Alloc(ctx, wdims);
    CudaStoragePtr db = with_bias ? Alloc(ctx, {wdims[0]}) : nullptr;
    Enqueue(ctx, Describe("conv2dBackwardWeights", {x.get(), dy.get()}), [&ctx, g, x, dy, dw, db] {
      ConvBackwardWeights(ctx, g, *x, *dy, *dw, db.get());
    });
    return Tuple(env, {WrapStorage(env, dw), db ? Napi::Value(WrapStorage(env, db)) : env.Null()});
  });
}

}  // namespace

void RegisterConv2d(Napi::Env env, Napi::Object exports) {
  exports.Set("conv2dForward", Napi::Function::New(env, Forward, "conv2dForward"));
  exports.Set("conv2dBackwardData", Napi::Function::New(env, BackwardData, "conv2dBackwardData"));
  exports.Set("conv2dBackwardWeights", Napi::Function::New(env, BackwardWeights, "conv2dBackwardWeights"));
}

}  // namespace cr::cuda
