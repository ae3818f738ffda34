// The arguments of every op, as the front end (native/common/ops/) reads and checks them once for
// all backends and hands them to a Backend (backend.h). Plain values: no JS value reaches a
// backend.
//
// Shapes are logical: NCHW activations, OIHW weights, as the user sees them. Every argument
// struct carries the element type the op computes in and the memory format it should produce, so
// that a new type (bf16, fp16) or layout (NHWC) is added here once for both backends; a backend
// refuses with an ArgumentError what it cannot run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "storage.h"

namespace cr {

using Dims = std::vector<int64_t>;

enum class MemoryFormat {
  // The backend's choice: oneDNN's blocked layouts on the CPU, plain NCHW on cuDNN today.
  kAny,
  kNchw,
  kNhwc,
};

// What every op's arguments have.
struct OpArgs {
  // The op with its input shapes ("conv2d [8, 3, 32, 32] [16, 3, 3, 3]"): the name of its queued
  // task, in failures and in profiles.
  std::string task;
  DType dtype = DType::kFloat32;
  MemoryFormat format = MemoryFormat::kAny;
};

// --- Buffers ---------------------------------------------------------------------------------

struct UploadArgs : OpArgs {
  Dims dims;
  // Numel(dims) values of `dtype`, readable only during the call.
  const void* values = nullptr;
};

struct FillArgs : OpArgs {
  Dims dims;
  // Finite; an integer in range for int32.
  double value = 0;
};

struct ReshapeArgs : OpArgs {
  StoragePtr x;
  // Same element count as x.
  Dims dims;
};

// x's values converted to `dtype` (another floating type than x's), rounded to nearest even.
struct CastArgs : OpArgs {
  StoragePtr x;
};

// How many values of `tensors` (floating, of any shapes) are infinite or NaN: the gradient
// scaler's check. The count is a float32 of shape [].
struct CountNonFiniteArgs : OpArgs {
  std::vector<StoragePtr> tensors;
};

// --- conv2d ------------------------------------------------------------------------------------

struct Conv2dGeometry {
  Dims x, w, y;
  Dims stride, padding, dilation;
  int64_t groups = 1;
};

struct Conv2dForwardArgs : OpArgs {
  Conv2dGeometry g;
  StoragePtr x, w;
  // Null without bias.
  StoragePtr bias;
};

struct Conv2dBackwardDataArgs : OpArgs {
  Conv2dGeometry g;
  StoragePtr dy, w;
};

struct Conv2dBackwardWeightsArgs : OpArgs {
  Conv2dGeometry g;
  StoragePtr x, dy;
  bool with_bias = false;
};

struct Conv2dWeightGrads {
  // Plain OIHW.
  StoragePtr dw;
  // Null without bias.
  StoragePtr db;
};

// --- Batch normalization over [N, C, H, W] ----------------------------------------------------
//
// One family with a fused tail: y = bn(x), y = relu(bn(x)) or y = relu(bn(x) + residual), the
// three places a residual network normalizes. x, y, the residual and the gradients share the
// element type `dtype` (float32 or half precision); weight, bias and the statistics are float32
// [C] whatever it is.

struct BatchNormTail {
  // Added before the ReLU; of x's shape and type. Null: none.
  StoragePtr residual;
  bool relu = false;
};

struct BatchNormForwardTrainingArgs : OpArgs {
  StoragePtr x, weight, bias;
  // Updated in place when not null.
  StoragePtr running_mean, running_var;
  BatchNormTail tail;
  double momentum = 0.1;
  float eps = 1e-5f;
};

struct BatchNormForwardInferenceArgs : OpArgs {
  StoragePtr x, weight, bias, mean, var;
  BatchNormTail tail;
  float eps = 1e-5f;
};

// `saved1` to `saved3` are what the same backend's training forward returned for this x and
// tail; `y`, that forward's output, is given when the tail has a ReLU (its mask).
struct BatchNormBackwardArgs : OpArgs {
  StoragePtr x, y, dy, weight, saved1, saved2, saved3;
  bool with_residual = false, relu = false;
  float eps = 1e-5f;
};

struct BatchNormTrainingOutputs {
  // The saved statistics are the backend's own (mean and biased variance on the CPU, mean and
  // inverse standard deviation on cuDNN): opaque to everything but its backward. saved3 is
  // whatever else the backend's backward needs for the tail (the CPU's ReLU mask), or null.
  StoragePtr y, saved1, saved2, saved3;
};

struct BatchNormGrads {
  // dresidual: the residual's gradient with a residual, else null.
  StoragePtr dx, dweight, dbias, dresidual;
};

// --- Synchronized batch normalization (SyncBatchNorm) ---------------------------------------------
// The local parts of a batch norm whose statistics span a process group; the collectives between
// them run in lib/ops/sync-batch-norm.ts. Separate from batch normalization's entry points above.

// This rank's per-channel statistics of x [N, C, H, W]: a plain [3, C] of the mean, M2 (the sum
// of squared deviations from that mean) and the count N·H·W.
struct SyncBatchNormStatsArgs : OpArgs {
  StoragePtr x;
};

// Every rank's statistics ([W, 3, C], all-gathered) combined by Chan's parallel formula into the
// group's mean, biased variance and count ([C] each); the running statistics, when given, are
// updated in place as batchNormForwardTraining does, with the group's unbiased variance.
struct SyncBatchNormGatherArgs : OpArgs {
  StoragePtr gathered, running_mean, running_var;
  double momentum = 0.1;
};

struct SyncBatchNormGathered {
  StoragePtr mean, var, count;
};

// Backward, this rank's part: Σ dy and Σ dy·x̂ per channel, x̂ = (x − mean) / √(var + eps).
struct SyncBatchNormBackwardReduceArgs : OpArgs {
  StoragePtr x, dy, mean, var;
  float eps = 1e-5f;
};

struct SyncBatchNormSums {
  StoragePtr sum_dy, sum_dy_xhat;
};

// dx = weight / √(var + eps) · (dy − Σdy / count − x̂ · Σdy·x̂ / count), with the group's sums and count.
struct SyncBatchNormBackwardElemtArgs : OpArgs {
  StoragePtr x, dy, mean, var, weight, sum_dy, sum_dy_xhat, count;
  float eps = 1e-5f;
};

// --- Element-wise -------------------------------------------------------------------------------

enum class ElementwiseOp {
  kRelu,          // y = max(a, 0)
  kReluBackward,  // dx = b · (a > 0), a the forward's output, b the output gradient
  kScale,         // y = alpha · a
  kAdd,           // y = a + b
  kAddRelu,       // y = max(a + b, 0), the tail of a residual block
};

struct ElementwiseArgs : OpArgs {
  ElementwiseOp op = ElementwiseOp::kRelu;
  StoragePtr a;
  // Null for the unary ops; else of a's shape.
  StoragePtr b;
  float alpha = 1;
};

// --- 2-D pooling (PyTorch's floor-mode geometry) -------------------------------------------------

enum class PoolMode {
  kMax,
  // Padded zeros count in the divisor (PyTorch's count_include_pad = true).
  kAvg,
};

struct PoolGeometry {
  Dims x, y;
  Dims kernel, stride, padding;
};

struct Pool2dForwardArgs : OpArgs {
  PoolMode mode = PoolMode::kMax;
  PoolGeometry g;
  StoragePtr x;
};

struct Pool2dOutputs {
  StoragePtr y;
  // Max pooling: what the backward needs (opaque); null for average pooling.
  StoragePtr workspace;
};

struct Pool2dBackwardArgs : OpArgs {
  PoolMode mode = PoolMode::kMax;
  PoolGeometry g;
  StoragePtr dy;
  // Max pooling: the forward's workspace, which the backend checks came from this geometry.
  StoragePtr workspace;
};

// --- Linear: y = x·wᵀ + b with x [N, in], w [out, in] -------------------------------------------

struct LinearForwardArgs : OpArgs {
  int64_t n = 0, in = 0, out = 0;
  StoragePtr x, w;
  // Null without bias.
  StoragePtr bias;
};

struct LinearBackwardArgs : OpArgs {
  int64_t n = 0, in = 0, out = 0;
  StoragePtr x, w, dy;
  bool with_bias = false;
};

struct LinearGrads {
  StoragePtr dx, dw;
  // Null without bias.
  StoragePtr db;
};

// --- Softmax cross-entropy, mean over rows, with label smoothing -------------------------------

struct SoftmaxCrossEntropyForwardArgs : OpArgs {
  int64_t n = 0, k = 0;
  // Float [N, K] and int32 [N]; a label outside [0, K) fails the op when it runs.
  StoragePtr logits, labels;
  double smoothing = 0;
};

struct SoftmaxCrossEntropyOutputs {
  // Shape [] and [N, K].
  StoragePtr loss, probs;
};

struct SoftmaxCrossEntropyBackwardArgs : OpArgs {
  int64_t n = 0, k = 0;
  StoragePtr probs, labels;
  // Float32 of shape [].
  StoragePtr dloss;
  double smoothing = 0;
};

// --- SGD over every parameter at once ---------------------------------------------------------

// PyTorch's rule: g = grad + wd·p; buf = momentum·buf + g (buf = g on the first step);
// g = nesterov ? g + momentum·buf : buf; p -= lr·g.
struct SgdHyperparameters {
  float lr = 0, momentum = 0, weight_decay = 0;
  bool nesterov = false, first = false;
};

struct SgdArgs : OpArgs {
  // Pairwise of equal shapes, no parameter twice; `bufs` empty when momentum is 0.
  std::vector<StoragePtr> params, grads, bufs;
  SgdHyperparameters h;
  // A float32 [1] buffer whose value, read when the step runs, replaces h.lr; null: h.lr. A
  // captured step replays the same kernels, so a schedule can only reach them through memory
  // (PyTorch's capturable optimizers).
  StoragePtr lr;
};

// dst's values replaced by src's (same shape and type).
struct CopyIntoArgs : OpArgs {
  StoragePtr dst, src;
};

// --- Collectives over a process group (Gloo on the CPU, NCCL on CUDA) ------------------------------

// Joins this process to a group of `world_size` ranks.
struct GroupArgs : OpArgs {
  int rank = 0, world_size = 1;
  // Every wait for a peer (connecting, each collective) fails after this long.
  int64_t timeout_ms = 0;
  // The local address the other ranks reach this one at (Gloo listens there).
  std::string host;
};

enum class CollectiveKind { kAllReduce, kBroadcast, kAllGather, kBarrier };

enum class ReduceOp {
  kSum,
  kMean,  // the sum divided by the world size
  kMax,
};

// Every rank must start the same collectives, over the same shapes, in the same order (as in
// PyTorch): the front end cannot check what the other processes do.
struct CollectiveArgs : OpArgs {
  CollectiveKind kind = CollectiveKind::kAllReduce;
  ReduceOp op = ReduceOp::kSum;
  // Broadcast: the rank whose values every rank receives.
  int root = 0;
  // Float32. All-reduce and broadcast: one or more, reduced as one flat bucket, one output each
  // of the input's shape. All-gather: one, output [world size, ...shape]. Barrier: none.
  std::vector<StoragePtr> inputs;
};

// A started collective. Its outputs are allocated at the start, like any op's, and handed to the
// caller at once, so that a collective nobody waits for holds nothing once it has run; the
// communication writes them, and only ops queued after a CollectiveWait of `ticket` may read
// them.
struct StartedCollective {
  uint64_t ticket = 0;
  std::vector<StoragePtr> outputs;
};

}  // namespace cr
