/**
 * `convertSyncBatchNorm`: PyTorch's `nn.SyncBatchNorm.convert_sync_batchnorm`.
 * @module
 */
import { BatchNorm2d } from './layers.js';
import { Module } from './module.js';

/**
 * Makes every `BatchNorm2d` in `model` synchronized: in training, its batch statistics are the
 * mean and variance of every rank's batch (all-gathered in forward, with the gradient sums
 * all-reduced in backward), so that N ranks with batch B/N take the steps of one process with
 * batch B. Changes the layers in place (their parameters, buffers and names stay) and returns
 * `model`. Call it before wrapping the model in `nn.DistributedDataParallel`; outside a process
 * group, or in a group of one, the layers behave as before. Evaluation uses the running
 * statistics, which every rank updates with the same group statistics.
 *
 * ```ts
 * const ddp = new nn.DistributedDataParallel(nn.convertSyncBatchNorm(models.cifarResNet({ depth: 20 })));
 * ```
 *
 * Every rank must run the same layers in the same order (each is a collective). CPU tensors
 * only so far: on cuda the forward throws ERR_UNSUPPORTED.
 */
export function convertSyncBatchNorm<M extends Module>(model: M): M {
  if (!(model instanceof Module)) throw new TypeError('convertSyncBatchNorm: expected a Module');
  for (const [, m] of model.namedModules()) if (m instanceof BatchNorm2d) m._synchronize();
  return model;
}
