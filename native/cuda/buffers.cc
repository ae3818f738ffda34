// Moving data in and out of the GPU, reshape and casts. Every CUDA buffer is plain row-major.
#include <cstring>

#include "cuda_backend.h"

namespace cr::cuda {

namespace {

// A CUDA host function: returns an upload's staging buffer to its pool once the copy has read it.
void ReleaseStaging(void* holder) { delete static_cast<std::shared_ptr<PinnedBuffer>*>(holder); }

// A readback's state between the worker, which launches its copy, and the completion thread.
struct Readback {
  Readback(int device, size_t bytes) : data(device, bytes) {}
  PinnedBuffer data;
  std::unique_ptr<SyncPoint> end;
};

}  // namespace

StoragePtr CudaBackend::Upload(const UploadArgs& a) {
  CudaStoragePtr s = Alloc(a.dims, a.dtype);
  // JS may change the array once upload() returns, so its values are copied now, into the
  // pinned buffer the copy engine reads from (no zero-filling: every byte is written).
  auto staging = std::make_shared<PinnedBuffer>(device_->index, s->bytes);
  std::memcpy(staging->get(), a.values, s->bytes);
  Enqueue(a.task, [this, s, staging] { CopyIn(*s, staging); });
  return s;
}

void CudaBackend::CopyIn(CudaStorage& s, const std::shared_ptr<PinnedBuffer>& staging) {
  // The front end refuses uploads while a step is captured; this is the worker's backstop.
  RefuseInCapture("an upload from JavaScript memory");
  const Device& d = *device_;
  void* dst = s.AllocateOn(d.copy_stream);
  try {
    CR_CUDA(cudaMemcpyAsync(dst, staging->get(), s.bytes, cudaMemcpyHostToDevice, d.copy_stream));
    // Every later use of the buffer, and its free, are on the compute stream.
    CR_CUDA(cudaEventRecord(d.upload_done, d.copy_stream));
    CR_CUDA(cudaStreamWaitEvent(d.stream, d.upload_done, 0));
    auto holder = std::make_unique<std::shared_ptr<PinnedBuffer>>(staging);
    CR_CUDA(cudaLaunchHostFunc(d.copy_stream, ReleaseStaging, holder.get()));
    holder.release();
  } catch (...) {
    // The compute stream may not wait for the copy stream, and the staging buffer goes back to
    // its pool when this task ends: both are safe only once the copy stream has drained.
    if (cudaStreamSynchronize(d.copy_stream) != cudaSuccess) cudaGetLastError();
    throw;
  }
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

// On the worker: queues the copy into pinned memory and a SyncPoint behind it, and returns; the
// completion thread waits for them and copies into `dst`, the JS array the readback resolves with.
Completion CudaBackend::ReadPlain(const StoragePtr& s, void* dst) {
  CudaStoragePtr src = Cuda(s);
  CR_CUDA(cudaSetDevice(device_->index));
  RefuseInCapture("a sync point");
  auto r = std::make_shared<Readback>(device_->index, src->bytes);
  CR_CUDA(cudaMemcpyAsync(r->data.get(), src->Ptr(), src->bytes, cudaMemcpyDeviceToHost, stream()));
  try {
    r->end = std::make_unique<SyncPoint>(device_, label_error_);
  } catch (...) {
    // The pinned block goes back to its pool with `r`: not while the copy may still write it.
    if (cudaStreamSynchronize(stream()) != cudaSuccess) cudaGetLastError();
    throw;
  }
  return [r, dst] {
    r->end->Wait();
    std::memcpy(dst, r->data.get(), r->data.bytes());
  };
}

void CudaBackend::CopyInto(const CopyIntoArgs& a) {
  CudaStoragePtr dst = Cuda(a.dst), src = Cuda(a.src);
  Enqueue(a.task, [this, dst, src] {
    CR_CUDA(cudaMemcpyAsync(dst->Ptr(), src->Ptr(), dst->bytes, cudaMemcpyDeviceToDevice, stream()));
  });
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
