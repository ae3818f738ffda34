/**
 * Modules: the `Module` base class with PyTorch's parameter naming and state dicts, the layers
 * of a ResNet, and its residual blocks.
 * @module
 */
export { Module, type LoadStateDictOptions, type LoadStateDictResult } from './module.js';
export {
  Conv2d, BatchNorm2d, ReLU, Linear, MaxPool2d, AvgPool2d, GlobalAvgPool, Flatten, Sequential,
  type InitOptions, type Conv2dLayerOptions, type BatchNorm2dLayerOptions, type BatchNormTail, type LinearLayerOptions, type Pool2dLayerOptions,
  type MaxPool2dLayerOptions, type AvgPool2dLayerOptions,
} from './layers.js';
export { BasicBlock, Bottleneck, PreActBlock, PreActBottleneck, PadShortcut, type BlockOptions, type ShortcutKind } from './blocks.js';
export { DistributedDataParallel, type DistributedDataParallelOptions } from './ddp.js';
export { convertSyncBatchNorm } from './sync-batch-norm.js';
