/**
 * cudnn-resnet: build and train residual networks from Node.js on cuDNN (GPU) or oneDNN (CPU).
 *
 * ```ts
 * import { ops, nn, models, randn, tidy } from 'cudnn-resnet';
 * ```
 * @module
 */
export * as ops from './ops/index.js';
export * as optim from './optim/index.js';
export * as data from './data/index.js';
export * as nn from './nn/index.js';
export * as models from './models/index.js';
export * as amp from './amp/index.js';
export * as distributed from './distributed/index.js';
export { Tensor, type DType, type FloatDType, type DataOf } from './tensor/tensor.js';
export { tensor, randn, zeros, ones, memory, sync, emptyCache, setMemoryLimit, type CreateOptions, type TensorOptions, type FloatOptions, type RandomOptions, type MemoryInfo, type BackendMemory } from './tensor/create.js';
export { tidy, keep } from './tensor/scope.js';
export { seed } from './tensor/random.js';
export { noGrad, isGradEnabled } from './autograd/grad-mode.js';
export { backends, defaultBackend, setNumThreads, setTf32, type BackendInfo, type BackendName } from './backend/backends.js';
export { profile, type Profile, type ProfileOptions, type OpTime } from './backend/profile.js';
export * as train from './train/index.js';
export {
  saveSafetensors, saveSafetensorsSync, loadSafetensors, loadSafetensorsSync, readSafetensorsHeader,
  type SaveSafetensorsOptions, type LoadSafetensorsOptions, type SafetensorsHeader, type SafetensorsEntry,
} from './io/safetensors.js';
export { loadTorchStateDict, type LoadTorchOptions } from './io/torch.js';
export { exportOnnx, type ExportOnnxOptions } from './io/onnx-export.js';
