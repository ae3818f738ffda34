/**
 * `cudnn-resnet export --checkpoint FILE --onnx OUT.onnx`: the network of a training run, with
 * the checkpoint's weights, as an ONNX model (see `exportOnnx`). Its input is images normalized
 * as in training (`data.DATASET_STATS`), its output the logits.
 * @module
 */
import { exportOnnx } from '../io/onnx-export.js';
import { loadCheckpoint, readCheckpointState } from '../train/checkpoint.js';
import { type RunOptions, buildModel } from './run.js';

/** The images and classes of each data set a run can train on: the network's input and output. */
const DATASET_SHAPES: Readonly<Record<RunOptions['dataset'], { channels: number; height: number; width: number; classes: number }>> = {
  'fashion-mnist': { channels: 1, height: 28, width: 28, classes: 10 },
  cifar10: { channels: 3, height: 32, width: 32, classes: 10 },
  cifar100: { channels: 3, height: 32, width: 32, classes: 100 },
};

/** Exports the checkpoint's network; returns what was written, for the log. */
export async function exportCheckpoint(checkpoint: string, onnx: string, options: { opset?: number; batch?: number }): Promise<string> {
  const state = await readCheckpointState(checkpoint);
  const o = { ...(state.options as RunOptions), backend: 'cpu' as const };
  const { channels, height, width, classes } = DATASET_SHAPES[o.dataset];
  const model = buildModel(o, channels, classes);
  try {
    await loadCheckpoint(checkpoint, { model, backend: 'cpu' });
    await exportOnnx(model, onnx, {
      inputShape: [options.batch ?? 1, channels, height, width], dynamicBatch: options.batch === undefined,
      ...(options.opset === undefined ? {} : { opset: options.opset }),
    });
  } finally {
    model.dispose();
  }
  return `${onnx}: ${o.model}${o.model.startsWith('resnet') && o.model !== 'resnet' ? '' : `-${o.depth}`} (epoch ${state.epoch} of ${checkpoint}), ` +
    `input [${options.batch ?? 'batch'}, ${channels}, ${height}, ${width}], ${classes} classes`;
}
