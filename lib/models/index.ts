/**
 * The ResNet family, with torchvision's layout and parameter names.
 * @module
 */
export {
  ResNet, resnet18, resnet34, resnet50, resnet101, resnet152, cifarResNet, preActResNet, wideResNet,
  type BlockKind, type ResNetConfig, type ImageNetResNetOptions, type CifarOptions, type CifarResNetOptions, type WideResNetOptions,
} from './resnet.js';
