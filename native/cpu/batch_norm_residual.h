// Batch norm + residual add (+ ReLU) forward, y = relu((x - mean)·γ/√(var + ε) + β + z), as this
// backend's own kernels: oneDNN 2.x has no fused form of it (3.x's fuse_norm_add_relu is not in
// 2.6, which CI builds against, and one kernel for both keeps one tested path). Unfused, the
// block tail reads and writes the activation twice more (batch norm writes y, add + ReLU reads
// y and z and writes the sum); fused, the statistics passes read x and the one output pass reads
// x and z and writes y.
//
// The kernels take the layouts the convolutions hand to batch norm, nChw16c / nChw8c / nChw4c
// (channel blocks of 16, 8, 4) and plain NCHW (blocks of 1), in float32 or bfloat16 (float16 is
// converted to float32 by the caller, see ComputeDType). Statistics: per chunk of at most 16K
// elements of one image and channel block, two passes (the mean of the values less the chunk's
// first one, then the sum of squared deviations from it, the second pass from cache); the chunks
// are merged per channel in double with Chan, Golub and LeVeque's pairwise update, and the
// output pass subtracts the double mean as two floats. This is more accurate than oneDNN's
// float32 statistics (test/batch-norm-tail.test.ts measures both), and reads x from memory once.
#pragma once

#include <cstdint>
#include <optional>

#include "cpu_backend.h"

namespace cr::cpu {

// A 4-D activation as channel blocks: element (n, c, s) with s = h·W + w sits at
// ((n·blocks + c / block)·hw + s)·block + c % block.
struct BlockedLayout {
  int64_t n, c, hw, block, blocks;
};

// `md` as a BlockedLayout, or nothing for another layout (nhwc, or anything not 4-D).
std::optional<BlockedLayout> BlockedOf(const Desc& md);

// Batch mean and biased variance per channel of x (float32 or bfloat16 memory in layout `l`).
void BatchMoments(const BlockedLayout& l, DType dtype, const void* x, double* mean, double* var);

// y = (x - mean)·scale + shift + z, then max(·, 0) when `relu`, per channel; x, z and y share
// layout and type; padded channels of a blocked layout are written as zeros.
void NormalizeAddRelu(const BlockedLayout& l, DType dtype, const void* x, const void* z, void* y, const double* mean,
                      const float* scale, const float* shift, bool relu);

}  // namespace cr::cpu
