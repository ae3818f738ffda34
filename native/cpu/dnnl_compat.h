// The one place that knows which oneDNN API it is compiled against: 2.x (Debian 12 and Ubuntu
// 24.04's libdnnl-dev, 2.6 and newer) or 3.x (Debian 13's 3.7, PyTorch's, a DNNL_ROOT build).
//
// oneDNN 3.0 removed the operation descriptors (`convolution_forward::desc` and friends): a
// primitive descriptor is now made from the engine and the arguments in one call. It also made
// memory descriptors opaque (no `.data` to read the blocking from), dropped the scale argument
// of eltwise post-ops, and takes separate source and destination descriptors where 2.x took one.
// The op files call the functions below with the arguments of both, in one order; everything
// else they use (memory, primitives, execution, reorders, attributes) is the same in both.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>

namespace cr::cpu::compat {

using dnnl::algorithm;
using dnnl::engine;
using dnnl::memory;
using dnnl::primitive_attr;
using dnnl::prop_kind;
using Desc = memory::desc;
using Flags = dnnl::normalization_flags;

// --- Memory descriptors ------------------------------------------------------------------------

inline memory::dims DimsOf(const Desc& md) {
#if DNNL_VERSION_MAJOR >= 3
  return md.get_dims();
#else
  return md.dims();
#endif
}

inline memory::data_type TypeOf(const Desc& md) {
#if DNNL_VERSION_MAJOR >= 3
  return md.get_data_type();
#else
  return md.data_type();
#endif
}

// Whether a blocked layout pads a dimension up to its block (16 channels, say): the padding
// must hold zeros, since kernels read whole blocks.
inline bool HasPadding(const Desc& md) {
#if DNNL_VERSION_MAJOR >= 3
  return md.get_padded_dims() != md.get_dims();
#else
  for (int i = 0; i < md.data.ndims; ++i)
    if (md.data.padded_dims[i] != md.data.dims[i]) return true;
  return false;
#endif
}

// A blocked descriptor's geometry: element (i0, i1, ...) lies at
// sum_d (i_d / block_d) * strides[d] plus its place inside the inner blocks, the last block
// varying fastest (block_d = product of the inner blocks of dim d).
struct Blocking {
  memory::dims dims, padded, strides, inner_blks, inner_idxs;
};

// Requires format_kind blocked.
inline Blocking BlockingOf(const Desc& md) {
#if DNNL_VERSION_MAJOR >= 3
  return {md.get_dims(), md.get_padded_dims(), md.get_strides(), md.get_inner_blks(), md.get_inner_idxs()};
#else
  const dnnl_memory_desc_t& d = md.data;
  const dnnl_blocking_desc_t& b = d.format_desc.blocking;
  return {memory::dims(d.dims, d.dims + d.ndims), memory::dims(d.padded_dims, d.padded_dims + d.ndims),
          memory::dims(b.strides, b.strides + d.ndims), memory::dims(b.inner_blks, b.inner_blks + b.inner_nblks),
          memory::dims(b.inner_idxs, b.inner_idxs + b.inner_nblks)};
#endif
}

inline bool IsBlocked(const Desc& md) {
#if DNNL_VERSION_MAJOR >= 3
  return md.get_format_kind() == memory::format_kind::blocked;
#else
  return md.data.format_kind == dnnl_blocked;
#endif
}

// Appends a descriptor's identity (type, dims, padded dims, blocking) to a cache key.
inline void AppendDesc(std::string& key, const Desc& md) {
#if DNNL_VERSION_MAJOR >= 3
  const int ndims = md.get_ndims();
  const memory::dims dims = md.get_dims(), padded = md.get_padded_dims();
  key += std::to_string(int(md.get_data_type())) + ':';
  for (int i = 0; i < ndims; ++i) key += std::to_string(dims[i]) + ',';
  key += '/';
  for (int i = 0; i < ndims; ++i) key += std::to_string(padded[i]) + ',';
  if (md.get_format_kind() == memory::format_kind::blocked) {
    const memory::dims strides = md.get_strides(), blks = md.get_inner_blks(), idxs = md.get_inner_idxs();
    key += 's';
    for (int i = 0; i < ndims; ++i) key += std::to_string(strides[i]) + ',';
    key += 'b';
    for (int i = 0; i < md.get_inner_nblks(); ++i) key += std::to_string(idxs[i]) + 'x' + std::to_string(blks[i]) + ',';
  } else {
    key += 'k' + std::to_string(int(md.get_format_kind()));
  }
#else
  const dnnl_memory_desc_t& d = md.data;
  key += std::to_string(int(d.data_type)) + ':';
  for (int i = 0; i < d.ndims; ++i) key += std::to_string(d.dims[i]) + ',';
  key += '/';
  for (int i = 0; i < d.ndims; ++i) key += std::to_string(d.padded_dims[i]) + ',';
  if (d.format_kind == dnnl_blocked) {
    const dnnl_blocking_desc_t& b = d.format_desc.blocking;
    key += 's';
    for (int i = 0; i < d.ndims; ++i) key += std::to_string(b.strides[i]) + ',';
    key += 'b';
    for (int i = 0; i < b.inner_nblks; ++i) key += std::to_string(b.inner_idxs[i]) + 'x' + std::to_string(b.inner_blks[i]) + ',';
  } else {
    key += 'k' + std::to_string(int(d.format_kind));
  }
#endif
  key += ';';
}

// A 4-D layout that loops can walk: element (n, c, h, w) is at
// n * strides[0] + (c / block) * strides[1] + h * strides[2] + w * strides[3] + c % block, in
// elements. Plain NCHW and NHWC have block 1; oneDNN's nChw8c and nChw16c block the channels.
struct ChannelBlocked {
  int64_t strides[4];
  int64_t block;
};

// The layout of `md` as a ChannelBlocked, or false when it is not one (another blocking, an
// offset, not 4-D).
inline bool ChannelBlockedOf(const Desc& md, ChannelBlocked& out) {
#if DNNL_VERSION_MAJOR >= 3
  if (md.get_ndims() != 4 || md.get_format_kind() != memory::format_kind::blocked || md.get_submemory_offset() != 0) return false;
  const memory::dims strides = md.get_strides(), blks = md.get_inner_blks(), idxs = md.get_inner_idxs();
  const int nblks = md.get_inner_nblks();
#else
  const dnnl_memory_desc_t& d = md.data;
  if (d.ndims != 4 || d.format_kind != dnnl_blocked || d.offset0 != 0) return false;
  const dnnl_blocking_desc_t& b = d.format_desc.blocking;
  const int64_t* strides = b.strides;
  const int64_t* blks = b.inner_blks;
  const int64_t* idxs = b.inner_idxs;
  const int nblks = b.inner_nblks;
#endif
  if (nblks > 1 || (nblks == 1 && idxs[0] != 1)) return false;
  for (int i = 0; i < 4; ++i) out.strides[i] = strides[i];
  out.block = nblks == 1 ? blks[0] : 1;
  return true;
}

// --- Attributes ---------------------------------------------------------------------------------

inline void AppendEltwise(dnnl::post_ops& ops, algorithm alg, float alpha, float beta) {
#if DNNL_VERSION_MAJOR >= 3
  ops.append_eltwise(alg, alpha, beta);
#else
  ops.append_eltwise(1.f, alg, alpha, beta);
#endif
}

// --- Primitive descriptors -----------------------------------------------------------------------
// Dilation counts from 0 (oneDNN's convention); `bias` may be an empty descriptor.

inline dnnl::convolution_forward::primitive_desc ConvForward(const engine& e, prop_kind prop, const Desc& src,
                                                             const Desc& weights, const Desc& bias, const Desc& dst,
                                                             const memory::dims& strides, const memory::dims& dilation,
                                                             const memory::dims& pad_l, const memory::dims& pad_r,
                                                             const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, prop, algorithm::convolution_direct, src, weights, bias, dst, strides, dilation, pad_l, pad_r, attr};
#else
  return {{prop, algorithm::convolution_direct, src, weights, bias, dst, strides, dilation, pad_l, pad_r}, attr, e};
#endif
}

inline dnnl::convolution_backward_data::primitive_desc ConvBackwardData(
    const engine& e, const Desc& diff_src, const Desc& weights, const Desc& diff_dst, const memory::dims& strides,
    const memory::dims& dilation, const memory::dims& pad_l, const memory::dims& pad_r,
    const dnnl::convolution_forward::primitive_desc& hint, const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, algorithm::convolution_direct, diff_src, weights, diff_dst, strides, dilation, pad_l, pad_r, hint, attr};
#else
  return {{algorithm::convolution_direct, diff_src, weights, diff_dst, strides, dilation, pad_l, pad_r}, attr, e, hint};
#endif
}

inline dnnl::convolution_backward_weights::primitive_desc ConvBackwardWeights(
    const engine& e, const Desc& src, const Desc& diff_weights, const Desc& diff_bias, const Desc& diff_dst,
    const memory::dims& strides, const memory::dims& dilation, const memory::dims& pad_l, const memory::dims& pad_r,
    const dnnl::convolution_forward::primitive_desc& hint, const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e,       algorithm::convolution_direct, src,   diff_weights, diff_bias, diff_dst, strides,
          dilation, pad_l,                          pad_r, hint,         attr};
#else
  return {{algorithm::convolution_direct, src, diff_weights, diff_bias, diff_dst, strides, dilation, pad_l, pad_r},
          attr,
          e,
          hint};
#endif
}

// Normalizes `data` in place of layout: source and destination share its descriptor.
inline dnnl::batch_normalization_forward::primitive_desc BatchNormForward(const engine& e, prop_kind prop,
                                                                          const Desc& data, float eps, Flags flags,
                                                                          const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, prop, data, data, eps, flags, attr};
#else
  return {{prop, data, eps, flags}, attr, e};
#endif
}

inline dnnl::batch_normalization_backward::primitive_desc BatchNormBackward(
    const engine& e, const Desc& data, float eps, Flags flags,
    const dnnl::batch_normalization_forward::primitive_desc& hint, const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, prop_kind::backward, data, data, data, eps, flags, hint, attr};
#else
  return {{prop_kind::backward, data, data, eps, flags}, attr, e, hint};
#endif
}

// oneDNN 2.6 refuses to run a backward made with use_shift unless a shift is passed, though the
// gradients do not depend on it and it is never read; 3.x refuses to run it when one is passed
// ("bad number of inputs"). `stand_in` is any memory of the shift's shape.
inline void AddBatchNormBackwardShift(std::unordered_map<int, memory>& args, const memory& stand_in) {
#if DNNL_VERSION_MAJOR < 3
  args.insert({DNNL_ARG_SHIFT, stand_in});
#else
  (void)args;
  (void)stand_in;
#endif
}

inline dnnl::eltwise_forward::primitive_desc EltwiseForward(const engine& e, prop_kind prop, algorithm alg,
                                                            const Desc& data, float alpha, float beta,
                                                            const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, prop, alg, data, data, alpha, beta, attr};
#else
  return {{prop, alg, data, alpha, beta}, attr, e};
#endif
}

inline dnnl::eltwise_backward::primitive_desc EltwiseBackward(const engine& e, algorithm alg, const Desc& data,
                                                              float alpha, float beta,
                                                              const dnnl::eltwise_forward::primitive_desc& hint,
                                                              const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, alg, data, data, data, alpha, beta, hint, attr};
#else
  return {{alg, data, data, alpha, beta}, attr, e, hint};
#endif
}

inline dnnl::binary::primitive_desc Binary(const engine& e, algorithm alg, const Desc& src0, const Desc& src1,
                                           const Desc& dst, const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, alg, src0, src1, dst, attr};
#else
  return {{alg, src0, src1, dst}, attr, e};
#endif
}

inline dnnl::pooling_forward::primitive_desc PoolForward(const engine& e, prop_kind prop, algorithm alg,
                                                         const Desc& src, const Desc& dst, const memory::dims& strides,
                                                         const memory::dims& kernel, const memory::dims& pad_l,
                                                         const memory::dims& pad_r, const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, prop, alg, src, dst, strides, kernel, memory::dims(strides.size(), 0), pad_l, pad_r, attr};
#else
  return {{prop, alg, src, dst, strides, kernel, pad_l, pad_r}, attr, e};
#endif
}

inline dnnl::pooling_backward::primitive_desc PoolBackward(const engine& e, algorithm alg, const Desc& diff_src,
                                                           const Desc& diff_dst, const memory::dims& strides,
                                                           const memory::dims& kernel, const memory::dims& pad_l,
                                                           const memory::dims& pad_r,
                                                           const dnnl::pooling_forward::primitive_desc& hint,
                                                           const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, alg, diff_src, diff_dst, strides, kernel, memory::dims(strides.size(), 0), pad_l, pad_r, hint, attr};
#else
  return {{alg, diff_src, diff_dst, strides, kernel, pad_l, pad_r}, attr, e, hint};
#endif
}

inline dnnl::inner_product_forward::primitive_desc InnerProductForward(const engine& e, prop_kind prop,
                                                                       const Desc& src, const Desc& weights,
                                                                       const Desc& bias, const Desc& dst,
                                                                       const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, prop, src, weights, bias, dst, attr};
#else
  return {{prop, src, weights, bias, dst}, attr, e};
#endif
}

inline dnnl::inner_product_backward_data::primitive_desc InnerProductBackwardData(
    const engine& e, const Desc& diff_src, const Desc& weights, const Desc& diff_dst,
    const dnnl::inner_product_forward::primitive_desc& hint, const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, diff_src, weights, diff_dst, hint, attr};
#else
  return {{diff_src, weights, diff_dst}, attr, e, hint};
#endif
}

inline dnnl::inner_product_backward_weights::primitive_desc InnerProductBackwardWeights(
    const engine& e, const Desc& src, const Desc& diff_weights, const Desc& diff_bias, const Desc& diff_dst,
    const dnnl::inner_product_forward::primitive_desc& hint, const primitive_attr& attr) {
#if DNNL_VERSION_MAJOR >= 3
  return {e, src, diff_weights, diff_bias, diff_dst, hint, attr};
#else
  return {{src, diff_weights, diff_bias, diff_dst}, attr, e, hint};
#endif
}

}  // namespace cr::cpu::compat
