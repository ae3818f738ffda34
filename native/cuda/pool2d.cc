// 2-D max and average pooling on cuDNN, forward and backward (PyTorch's floor-mode geometry).
//
// cuDNN's max-pooling backward needs the forward's input and output rather than an argmax
// workspace, so the opaque "workspace" of maxPool2dForward holds references to both: they stay
// alive until the backward ran (the price: the input is kept, where the CPU backend keeps only
// argmax offsets). The workspace also remembers the geometry, so a workspace of another
// pooling is refused.
#include "pool2d.h"

namespace cr::cuda {

void SetPool(const PoolDesc& d, PoolMode mode, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
             const std::vector<int64_t>& padding) {
  CR_CUDNN(cudnnSetPooling2dDescriptor(
      d.get(), mode == PoolMode::kMax ? CUDNN_POOLING_MAX : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
      CUDNN_PROPAGATE_NAN, int(kernel[0]), int(kernel[1]), int(padding[0]), int(padding[1]), int(stride[0]), int(stride[1])));
}

namespace {

struct PoolPlanKey {
  PoolMode mode;
  PoolGeometry g;
  DType dtype;

  std::string Key() const {
    std::string k = mode == PoolMode::kMax ? "pool;max;" : "pool;avg;";
    k += std::to_string(int(dtype)) + ';';
    for (const auto* v : {&g.x, &g.kernel, &g.stride, &g.padding}) AppendInts(k, *v);
    return k;
  }
};

struct Plan {
  TensorDesc x, y;
  PoolDesc pool;
};

std::shared_ptr<Plan> GetPlan(CudaBackend& b, const PoolPlanKey& k) {
  return b.Cached<Plan>(k.Key(), [&] {
    auto plan = std::make_shared<Plan>();
    SetTensor4d(plan->x, k.g.x, k.dtype);
    SetTensor4d(plan->y, k.g.y, k.dtype);
    SetPool(plan->pool, k.mode, k.g.kernel, k.g.stride, k.g.padding);
    return plan;
  });
}

struct PoolWorkspace : CudaStorage {
  PoolWorkspace(std::shared_ptr<Device> device, const std::vector<int64_t>& dims, std::string key, CudaStoragePtr x,
            CudaStoragePtr y)
      : CudaStorage(std::move(device), dims, DType::kFloat32, 0), key(std::move(key)), x(std::move(x)), y(std::move(y)) {}
  const std::string key;
  const CudaStoragePtr x, y;
};

}  // namespace

Pool2dOutputs CudaBackend::Pool2dForward(const Pool2dForwardArgs& a) {
  if (a.g.x[0] * a.g.x[1] * a.g.x[2] * a.g.x[3] > INT32_MAX) {
    RefusePool(a.g, "tensors above 2^31 elements are not supported by cuDNN's 4-D descriptors");
  }
  const PoolPlanKey k{a.mode, a.g, a.dtype};
  CudaStoragePtr x = Cuda(a.x), y = Alloc(a.g.y, a.dtype);
  Enqueue(a.task, [this, k, x, y] {
    auto plan = GetPlan(*this, k);
    CR_CUDNN(cudnnPoolingForward(cudnn(), plan->pool.get(), &kOne, plan->x.get(), x->Ptr(), &kZero, plan->y.get(), y->Ptr()));
  });
  if (a.mode == PoolMode::kAvg) return {y, nullptr};
  return {y, std::make_shared<PoolWorkspace>(device(), a.g.y, k.Key(), x, y)};
}

StoragePtr CudaBackend::Pool2dBackward(const Pool2dBackwardArgs& a) {
  if (a.g.x[0] * a.g.x[1] * a.g.x[2] * a.g.x[3] > INT32_MAX) {
    RefusePool(a.g, "tensors above 2^31 elements are not supported by cuDNN's 4-D descriptors");
  }
  const PoolPlanKey k{a.mode, a.g, a.dtype};
  CudaStoragePtr dy = Cuda(a.dy), dx = Alloc(a.g.x, a.dtype);
  // Max pooling reads the forward's output and input; average pooling reads neither, and is
  // handed dy and dx in their place.
  CudaStoragePtr y = dy, x = dx;
  if (a.mode == PoolMode::kMax) {
    auto ws = std::dynamic_pointer_cast<PoolWorkspace>(a.workspace);
    if (!ws || ws->key != k.Key()) RefuseWorkspace(a.g);
    y = ws->y;
    x = ws->x;
  }
  Enqueue(a.task, [this, k, dy, y, x, dx] {
    auto plan = GetPlan(*this, k);
    CR_CUDNN(cudnnPoolingBackward(cudnn(), plan->pool.get(), &kOne, plan->y.get(), y->Ptr(), plan->y.get(), dy->Ptr(),
                                  plan->x.get(), x->Ptr(), &kZero, plan->x.get(), dx->Ptr()));
  });
  return dx;
}

}  // namespace cr::cuda
