// Moving data in and out of the GPU, reshape and casts. Every CUDA buffer is plain row-major.
#include <cstring>

#include "cuda_backend.h"

namespace cr::cuda {

StoragePtr CudaBackend::Upload(const UploadArgs& a) {
  CudaStoragePtr s = Alloc(a.dims, a.dtype);
  // JS may change the array once upload() returns, so its values are copied now.
  auto staging = std::make_shared<std::vector<uint8_t>>(s->bytes);
  std::memcpy(staging->data(), a.values, staging->size());
  Enqueue(a.task, [this, s, staging] {
    // From pageable memory the copy returns once the source is staged, so `staging` may go.
    CR_CUDA(cudaMemcpyAsync(s->Ptr(), staging->data(), staging->size(), cudaMemcpyHostToDevice, stream()));
  });
  return s;
}

StoragePtr CudaBackend::Fill(const FillArgs& a) {
  uint32_t bits;
  if (a.dtype == DType::kFloat32) {
    const float f = static_cast<float>(a.value);
    std::memcpy(&bits, &f, 4);
  } else {
    const int32_t i = static_cast<int32_t>(a.value);
    std::memcpy(&bits, &i, 4);
  }
  CudaStoragePtr s = Alloc(a.dims, a.dtype);
  Enqueue(a.task, [this, s, bits] { CR_CUDA(kernels::Fill(s->Ptr(), bits, s->Numel(), stream())); });
  return s;
}

StoragePtr CudaBackend::ZerosLike(const OpArgs& a, const StoragePtr& like) {
  CudaStoragePtr s = Alloc(like->dims, like->dtype);
  Enqueue(a.task, [this, s] { CR_CUDA(cudaMemsetAsync(s->Ptr(), 0, s->bytes, stream())); });
  return s;
}

// Copies to host memory and waits, on the worker, for it and for everything queued before
// (Drain also reports a kernel fault or a bad label).
void CudaBackend::ReadPlain(const StoragePtr& s, void* dst) {
  CudaStoragePtr src = Cuda(s);
  CR_CUDA(cudaSetDevice(device_->index));
  CR_CUDA(cudaMemcpyAsync(dst, src->Ptr(), src->bytes, cudaMemcpyDeviceToHost, stream()));
  Drain();
}

StoragePtr CudaBackend::Reshape(const ReshapeArgs& a) {
  // Plain row-major: a reshape is a copy of the same bytes.
  CudaStoragePtr x = Cuda(a.x), out = Alloc(a.dims, a.x->dtype);
  Enqueue(a.task, [this, x, out] {
    CR_CUDA(cudaMemcpyAsync(out->Ptr(), x->Ptr(), x->bytes, cudaMemcpyDeviceToDevice, stream()));
  });
  return out;
}

// Only float32 buffers exist here (see Alloc): a cast to float32 is the buffer itself, any other
// is refused.
StoragePtr CudaBackend::Cast(const CastArgs& a) {
  if (a.dtype != a.x->dtype) {
    ThrowTypeError(OpScope::CurrentOp() + ": " + DTypeName(a.dtype) + " is not supported by the cuda backend yet");
  }
  return a.x;
}

// The gradient scaler's check is for float16 training, which this backend does not run yet.
StoragePtr CudaBackend::CountNonFinite(const CountNonFiniteArgs&) {
  ThrowRangeError("countNonFinite is not supported by the cuda backend yet");
}

}  // namespace cr::cuda
