// The argument checks shared by batch norm's entry points (batch_norm.cc) and synchronized batch
// norm's (sync_batch_norm.cc): one message style, "<op>: <why> (<the shapes involved>)", as a
// RangeError.
#pragma once

#include <cmath>
#include <string>

#include "../args.h"
#include "../checks.h"
#include "../op_args.h"
#include "../storage.h"

namespace cr::ops {

class BatchNormChecker {
 public:
  // A call over an input x: 4-D, floating point; [C] vectors take C from it.
  BatchNormChecker(const char* op, const Storage& x) : op_(op), x_(&x), c_(x.dims.size() == 4 ? x.dims[1] : 0),
                                                        context_("input " + x.ShapeString()) {
    if (x.dims.size() != 4) Bad("expected a 4-D input");
    if (!IsFloating(x.dtype)) Bad("expected a float32, bfloat16 or float16 input, got " + std::string(DTypeName(x.dtype)));
  }

  // A call over statistics only (syncBatchNormGather): `channels` and the shapes to name in
  // messages come from another argument.
  BatchNormChecker(const char* op, int64_t channels, std::string context)
      : op_(op), x_(nullptr), c_(channels), context_(std::move(context)) {}

  // The input must be float32 (the entry points that have no reduced-precision form).
  void Float32Input() const {
    if (x_ && x_->dtype != DType::kFloat32) Bad("expected a float32 input, got " + std::string(DTypeName(x_->dtype)));
  }

  // A float32 [C] vector (weight, bias, statistics, per-channel sums).
  void Vector(const Storage& s, const std::string& what) const {
    if (s.dims != Dims{c_} || s.dtype != DType::kFloat32) {
      Bad(what + " must be float32 [" + std::to_string(c_) + "], got " + DTypeName(s.dtype) + " " + s.ShapeString());
    }
  }

  // A tensor of x's shape and type: the output gradient, the residual, the forward's output.
  void LikeInput(const Storage& t, const char* what) const {
    if (t.dims != x_->dims) Bad(std::string(what) + " of shape " + t.ShapeString() + " does not match the input");
    if (t.dtype != x_->dtype) Bad("expected a " + std::string(DTypeName(x_->dtype)) + " " + what + ", got " + DTypeName(t.dtype));
  }

  // The fused tail at arguments i (residual | null) and i + 1 (relu).
  BatchNormTail Tail(const Napi::CallbackInfo& info, size_t i) const {
    BatchNormTail tail;
    tail.residual = OptionalTensorArg(info, i, "residual");
    if (tail.residual) LikeInput(*tail.residual, "residual");
    tail.relu = BoolArg(info, i + 1, "relu");
    return tail;
  }

  // Training normalizes with the batch variance and updates the running one with the unbiased
  // variance, which divides by N·H·W - 1: one value per channel has neither (PyTorch refuses too).
  void ManyValues() const {
    if (x_->dims[0] * x_->dims[2] * x_->dims[3] < 2) Bad("training needs more than one value per channel");
  }

  void Momentum(double momentum) const {
    if (!(momentum >= 0 && momentum <= 1)) Bad("momentum must be in [0, 1], got " + FormatNumber(momentum));
  }

  // Epsilon as the float32 the backends normalize with; positive and finite.
  float Eps(double eps) const {
    const float f = static_cast<float>(eps);
    if (!(f > 0) || !std::isfinite(f)) Bad("eps must be positive and representable as float32, got " + FormatNumber(eps));
    return f;
  }

  [[noreturn]] void Bad(const std::string& why) const { ThrowRangeError(std::string(op_) + ": " + why + " (" + context_ + ")"); }

 private:
  const char* op_;
  const Storage* x_;
  int64_t c_;
  std::string context_;
};

}  // namespace cr::ops
