// 2-D max and average pooling (PyTorch's floor-mode geometry): the forward on cuDNN, the
// backwards as CUDA kernels (kernels/pool2d.cu). cuDNN's pooling backward documents neither which
// of several tied maxima receives the gradient (PyTorch: the first; post-ReLU activations tie
// often) nor whether its x argument may alias dx, which an average-pooling backward without the
// forward's input would need; the kernels gather each input's gradient from the windows that
// cover it, deterministically, with PyTorch's rule, and their index arithmetic runs on the CPU in
// the host-side tests.
//
// Half precision is channels-last (cuda_backend.h): cuDNN's forward takes NHWC descriptors, and the
// backward kernels index NHWC planes (math::PoolElementAt).
//
// The opaque "workspace" of maxPool2dForward keeps the forward's input, which the backward reads
// to find each window's maximum again (the price: the input is kept, where the CPU backend keeps
// argmax offsets). It also remembers the geometry, so a workspace of another pooling is refused.
#include "pool2d.h"

namespace cr::cuda {

std::string PoolPlanKey::Key() const {
  std::string k = mode == PoolMode::kMax ? "pool;max;" : "pool;avg;";
  k += std::to_string(int(dtype)) + ';';
  for (const auto* v : {&g.x, &g.kernel, &g.stride, &g.padding}) AppendInts(k, *v);
  return k;
}

std::shared_ptr<PoolPlan> BuildPoolPlan(const PoolPlanKey& k) {
  auto plan = std::make_shared<PoolPlan>();
  SetTensor4d(plan->x, k.g.x, k.dtype);
  SetTensor4d(plan->y, k.g.y, k.dtype);
  CR_CUDNN(cudnnSetPooling2dDescriptor(
      plan->pool.get(),
      k.mode == PoolMode::kMax ? CUDNN_POOLING_MAX_DETERMINISTIC : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
      CUDNN_PROPAGATE_NAN, int(k.g.kernel[0]), int(k.g.kernel[1]), int(k.g.padding[0]), int(k.g.padding[1]),
      int(k.g.stride[0]), int(k.g.stride[1])));
  return plan;
}

math::PoolPlane PoolPlaneOf(const PoolGeometry& g, DType dtype) {
  return {g.x[2],      g.x[3],      g.y[2],     g.y[3],     g.kernel[0], g.kernel[1], g.stride[0],
          g.stride[1], g.padding[0], g.padding[1], ChannelsLast(g.x, dtype), g.x[1]};
}

namespace {

struct PoolWorkspace : CudaStorage {
  PoolWorkspace(std::shared_ptr<Device> device, const std::vector<int64_t>& dims, std::string key, CudaStoragePtr x)
      : CudaStorage(std::move(device), dims, DType::kFloat32, 0), key(std::move(key)), x(std::move(x)) {}
  const std::string key;
  const CudaStoragePtr x;
};

void RequireCudnnSizes(const PoolGeometry& g) {
  if (g.x[0] * g.x[1] * g.x[2] * g.x[3] > INT32_MAX) {
    RefusePool(g, "tensors above 2^31 elements are not supported by cuDNN's 4-D descriptors");
  }
}

}  // namespace

Pool2dOutputs CudaBackend::Pool2dForward(const Pool2dForwardArgs& a) {
  RequireCudnnSizes(a.g);
  const PoolPlanKey k{a.mode, a.g, a.dtype};
  CudaStoragePtr x = Cuda(a.x), y = Alloc(a.g.y, a.dtype);
  Enqueue(a.task, [this, k, x, y] {
    auto plan = Cached<PoolPlan>(k.Key(), [&] { return BuildPoolPlan(k); });
    CR_CUDNN(cudnnPoolingForward(cudnn(), plan->pool.get(), &kOne, plan->x.get(), x->Ptr(), &kZero, plan->y.get(), y->Ptr()));
  });
  if (a.mode == PoolMode::kAvg) return {y, nullptr};
  return {y, std::make_shared<PoolWorkspace>(device(), a.g.y, k.Key(), x)};
}

StoragePtr CudaBackend::Pool2dBackward(const Pool2dBackwardArgs& a) {
  RequireCudnnSizes(a.g);
  const PoolPlanKey k{a.mode, a.g, a.dtype};
  CudaStoragePtr dy = Cuda(a.dy), dx = Alloc(a.g.x, a.dtype), x;
  if (a.mode == PoolMode::kMax) {
    auto ws = std::dynamic_pointer_cast<PoolWorkspace>(a.workspace);
    if (!ws || ws->key != k.Key()) RefuseWorkspace(a.g);
    x = ws->x;
  }
  const math::PoolPlane plane = PoolPlaneOf(a.g, a.dtype);
  Enqueue(a.task, [this, dy, dx, x, plane] {
    if (x) {
      CR_CUDA(kernels::MaxPoolBackward(dx->dtype, x->Ptr(), dy->Ptr(), dx->Ptr(), dx->Numel(), plane, stream()));
    } else {
      CR_CUDA(kernels::AvgPoolBackward(dx->dtype, dy->Ptr(), dx->Ptr(), dx->Numel(), plane, stream()));
    }
  });
  return dx;
}

}  // namespace cr::cuda
