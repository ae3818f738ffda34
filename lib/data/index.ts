/**
 * Data: readers of MNIST/Fashion-MNIST (IDX) and CIFAR-10/100 (binary) files into memory,
 * augmentation and normalization, and `DataLoader`, which turns a data set into batches of
 * tensors with seeded, resumable shuffling.
 * @module
 */
export { type Dataset, type ChannelStats, dataRoot, subset, DATASET_STATS } from './dataset.js';
export { readIdx, loadFashionMnist, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, type IdxArray, type ReadIdxOptions, type LoadFashionMnistOptions } from './idx.js';
export { loadCifar, type LoadCifarOptions } from './cifar.js';
export { downloadCifar, CIFAR_ARCHIVES, type DownloadCifarOptions } from './download.js';
export { randomPadCrop, randomFlip, normalize } from './transforms.js';
export { DataLoader, type DataLoaderOptions, type AugmentOptions, type Batch, type BatchArrays, type LoaderPosition, type LoaderStats } from './loader.js';
export { Rng } from '../tensor/random.js';
