// Moving data in and out of the GPU, reshape and casts: the boundary where 4-D half-precision
// buffers, channels-last on this backend (cuda_backend.h), meet the plain row-major values the
// front end uploads and reads back. Every conversion of type or layout is one kernels::Convert.
#include <cstring>

#include "../common/half.h"
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

void ConvertInto(CudaBackend& b, CudaStorage& src, CudaStorage& dst) {
  CR_CUDA(kernels::Convert(src.Ptr(), src.dtype, LayoutOf(src.dims, src.dtype), dst.Ptr(), dst.dtype,
                           LayoutOf(dst.dims, dst.dtype), dst.Numel(), b.stream()));
}

StoragePtr CudaBackend::Upload(const UploadArgs& a) {
  CudaStoragePtr s = Alloc(a.dims, a.dtype);
  // JS may change the array once upload() returns, so its values are copied now, into the
  // pinned buffer the copy engine reads from (no zero-filling: every byte is written).
  auto staging = std::make_shared<PinnedBuffer>(device_->index, s->bytes);
  std::memcpy(staging->get(), a.values, s->bytes);
  if (!ChannelsLast(s->dims, s->dtype)) {
    Enqueue(a.task, [this, s, staging] { CopyIn(*s, staging); });
    return s;
  }
  // The values arrive in plain NCHW order: copied as they are, then reordered on the GPU.
  auto plain = std::make_shared<CudaStorage>(device_, std::vector<int64_t>{s->Numel()}, s->dtype);
  Enqueue(a.task, [this, s, plain, staging] {
    CopyIn(*plain, staging);
    ConvertInto(*this, *plain, *s);
  });
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
  if (IsHalf(a.dtype)) {
    const float f = static_cast<float>(a.value);
    const uint16_t half = a.dtype == DType::kBFloat16 ? FloatToBFloat16(f) : FloatToHalf(f);
    CudaStoragePtr s = Alloc(a.dims, a.dtype);
    Enqueue(a.task, [this, s, half] { CR_CUDA(kernels::Fill16(s->Ptr(), half, s->Numel(), stream())); });
    return s;
  }
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
  if (ChannelsLast(src->dims, src->dtype)) {
    // Reordered into plain NCHW first; the copy below is queued before the reordered buffer's
    // stream-ordered free.
    auto plain = std::make_shared<CudaStorage>(device_, std::vector<int64_t>{src->Numel()}, src->dtype);
    ConvertInto(*this, *src, *plain);
    src = plain;
  }
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
  CudaStoragePtr x = Cuda(a.x), out = Alloc(a.dims, a.x->dtype);
  if (!ChannelsLast(x->dims, x->dtype) && !ChannelsLast(out->dims, out->dtype)) {
    // Plain row-major both: a copy of the same bytes.
    Enqueue(a.task, [this, x, out] {
      CR_CUDA(cudaMemcpyAsync(out->Ptr(), x->Ptr(), x->bytes, cudaMemcpyDeviceToDevice, stream()));
    });
    return out;
  }
  Enqueue(a.task, [this, x, out] { ConvertInto(*this, *x, *out); });
  return out;
}

// Rounded to nearest even (math::Store); the layout follows the rule for the new type, so a cast
// of a 4-D float32 buffer to half precision also makes it channels-last, and back.
StoragePtr CudaBackend::Cast(const CastArgs& a) {
  if (a.dtype == a.x->dtype) return a.x;
  CudaStoragePtr x = Cuda(a.x), out = Alloc(a.x->dims, a.dtype);
  Enqueue(a.task, [this, x, out] { ConvertInto(*this, *x, *out); });
  return out;
}

StoragePtr CudaBackend::CountNonFinite(const CountNonFiniteArgs& a) {
  std::vector<CudaStoragePtr> tensors;
  for (const StoragePtr& t : a.tensors) tensors.push_back(Cuda(t));
  CudaStoragePtr out = Alloc({});
  Enqueue(a.task, [this, tensors = std::move(tensors), out] {
    // Counted exactly in 64 bits, then stored as the float32 the front end returns.
    DeviceMemory count(device(), sizeof(unsigned long long));
    auto* c = static_cast<unsigned long long*>(count.get());
    CR_CUDA(cudaMemsetAsync(c, 0, sizeof *c, stream()));
    for (const CudaStoragePtr& t : tensors) CR_CUDA(kernels::CountNonFinite(t->dtype, t->Ptr(), t->Numel(), c, stream()));
    CR_CUDA(kernels::CountToFloat(c, out->F(), stream()));
  });
  return out;
}

}  // namespace cr::cuda
