/**
 * The ResNet ops, forward and backward, on every backend. Each checks its arguments before any
 * native work, enqueues the computation and returns at once; when an input requires gradients
 * it records what `backward()` needs.
 * @module
 */
export { relu, add, addRelu, scale } from './elementwise.js';
export { batchNorm2d, type BatchNorm2dOptions } from './batch-norm.js';
export { conv2d, type Conv2dOptions } from './conv2d.js';
export { linear } from './linear.js';
export { softmaxCrossEntropy, type SoftmaxCrossEntropyOptions, type Labels } from './softmax-cross-entropy.js';
export { maxPool2d, avgPool2d, globalAvgPool, type Pool2dOptions } from './pool2d.js';
export { flatten } from './shape.js';
