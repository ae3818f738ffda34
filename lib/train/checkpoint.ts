/**
 * Checkpoints: model and optimizer tensors plus the run's state in one safetensors file,
 * replaced atomically, so a crash while saving leaves the previous checkpoint intact.
 * @module
 */
import { readSafetensorsHeader, loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import type { BackendName } from '../backend/backends.js';
import type { Module } from '../nn/module.js';
import { checkOptions, setOwn, show } from '../util/check.js';
import type { SGD } from '../optim/sgd.js';
import type { DType, Tensor } from '../tensor/tensor.js';

const FORMAT = 'cudnn-resnet/checkpoint@1';

/** The optimizer option: absent, or something with the state methods of `optim.SGD`. */
function checkOptimizer(op: string, value: unknown): SGD | undefined {
  if (value === undefined) return undefined;
  const o = value as Partial<SGD> | null;
  if (o === null || typeof o !== 'object' || typeof o.stateDict !== 'function' || typeof o.loadStateDict !== 'function') {
    throw new TypeError(`${op}: expected optimizer to be an optimizer (optim.SGD), got ${show(value)}`);
  }
  return o as SGD;
}

/** Everything besides tensors that a run needs to resume exactly. */
export interface CheckpointState {
  /** Epochs completed. */
  epoch: number;
  /** JSON-serializable facts of the run: metrics history, data loader seed, generator states, options. */
  [key: string]: unknown;
}

export interface SaveCheckpointOptions {
  model: Module;
  optimizer?: SGD;
  state: CheckpointState;
}

function checkModule(op: string, value: unknown): Module {
  const m = value as Module;
  if (!m || typeof m.stateDict !== 'function' || typeof m.loadStateDict !== 'function') {
    throw new TypeError(`${op}: expected model to be an nn.Module, got ${show(value)}`);
  }
  return m;
}

/**
 * Writes `model.*` (the model's state dict), `optimizer.*` (momentum buffers) and `state` (as
 * JSON metadata) to `path`, atomically.
 */
export async function saveCheckpoint(path: string, options: SaveCheckpointOptions): Promise<void> {
  const op = 'saveCheckpoint';
  const opts = checkOptions(op, options, ['model', 'optimizer', 'state']);
  const model = checkModule(op, opts.model);
  const optimizer = checkOptimizer(op, opts.optimizer);
  const state = opts.state as CheckpointState;
  if (!state || typeof state.epoch !== 'number') throw new TypeError(`${op}: expected state with an epoch number`);
  let json: string;
  try {
    json = JSON.stringify(state);
  } catch (err) {
    throw new TypeError(`${op}: expected state to be JSON-serializable (${(err as Error).message})`);
  }
  const tensors: Record<string, Tensor<DType>> = {};
  for (const [k, t] of Object.entries(model.stateDict())) tensors[`model.${k}`] = t;
  if (optimizer) for (const [k, t] of Object.entries(optimizer.stateDict())) tensors[`optimizer.${k}`] = t;
  await saveSafetensors(path, tensors, { metadata: { format: FORMAT, state: json } });
}

/** The run state saved in a checkpoint, without loading its tensors. */
export async function readCheckpointState(path: string): Promise<CheckpointState> {
  const header = await readSafetensorsHeader(path);
  if (header.metadata.format !== FORMAT || header.metadata.state === undefined) {
    throw new Error(`readCheckpointState: ${path} is not a cudnn-resnet checkpoint (metadata format '${header.metadata.format ?? ''}')`);
  }
  return JSON.parse(header.metadata.state) as CheckpointState;
}

export interface LoadCheckpointOptions {
  model: Module;
  optimizer?: SGD;
  backend?: BackendName;
}

/**
 * Loads a checkpoint written by `saveCheckpoint` into `model` (strictly: every key and shape
 * must match) and `optimizer`, and returns the saved state.
 */
export async function loadCheckpoint(path: string, options: LoadCheckpointOptions): Promise<CheckpointState> {
  const op = 'loadCheckpoint';
  const opts = checkOptions(op, options, ['model', 'optimizer', 'backend']);
  const model = checkModule(op, opts.model);
  const optimizer = checkOptimizer(op, opts.optimizer);
  const state = await readCheckpointState(path);
  const loaded = await loadSafetensors(path, opts.backend === undefined ? {} : { backend: opts.backend as BackendName });
  try {
    const modelDict: Record<string, Tensor<DType>> = {};
    const optimDict: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(loaded)) {
      if (k.startsWith('model.')) setOwn(modelDict, k.slice(6), t);
      else if (k.startsWith('optimizer.')) setOwn(optimDict, k.slice(10), t as Tensor);
      else throw new Error(`${op}: ${path} holds an unexpected tensor '${k}'`);
    }
    model.loadStateDict(modelDict, { strict: true });
    if (optimizer) optimizer.loadStateDict(optimDict);
  } finally {
    for (const t of Object.values(loaded)) t.dispose();
  }
  return state;
}
