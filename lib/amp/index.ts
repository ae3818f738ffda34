/**
 * Mixed precision: `autocast` (convolutions and linear layers in bfloat16 or float16, the rest as
 * PyTorch's autocast keeps it) and `GradScaler` (dynamic loss scaling for float16).
 * @module
 */
export { autocast, autocastDType, type AutocastOptions, type HalfDType } from './autocast.js';
export { GradScaler, type GradScalerOptions, type GradScalerState } from './grad-scaler.js';
