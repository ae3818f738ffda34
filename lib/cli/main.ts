/**
 * The command line: `cudnn-resnet <command> [options]`.
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type BackendName, setNumThreads } from '../backend/backends.js';
import { setMemoryLimit } from '../tensor/create.js';
import { loadCheckpoint, readCheckpointState } from '../train/checkpoint.js';
import { evaluate } from '../train/fit.js';
import { infoReport } from './info.js';
import { DEFAULTS, type RunOptions, buildModel, loadDataset, loaders, runFiles, runTraining } from './run.js';
import { degradation } from './experiment.js';
import { type LaunchOptions, launch } from './launch.js';
import { convert } from './convert.js';
import { exportCheckpoint } from './export.js';

const USAGE = `Usage: cudnn-resnet <command> [options]

Commands:
  train        train a network (default: CIFAR-style ResNet-20 on Fashion-MNIST)
  launch       run a script as the processes of a data-parallel job (torchrun's conventions)
  eval         evaluate a checkpoint on a test set
  convert IN.pth OUT.safetensors
               a PyTorch checkpoint's state dict (torch.save) to a safetensors file
  export       a checkpoint's network as an ONNX model
  info         backends, versions, devices, and what is missing
  experiment degradation
               plain vs residual networks of two depths (He et al. 2015, Figure 6)

train options:
  --model M          resnet | plain | preact | wrn | resnet18 | resnet34 | resnet50 (default resnet)
  --depth N          6n+2 for resnet/plain (20, 32, 44, 56, 110), 9n+2 for preact, 6n+4 for wrn (default 20)
  --widen K          width factor of wrn (default 4)
  --shortcut A|B     option A (identity, zero-padded) or B (projection) (default A)
  --drop-path P      stochastic depth: final drop rate (default 0)
  --dataset D        fashion-mnist | cifar10 | cifar100 (default fashion-mnist)
  --data DIR         folder with the dataset's files (default $CUDNN_RESNET_DATA or /usr/share/datasets)
  --epochs N         (default 6)      --batch N (default 128)    --lr X (default 0.1)
  --weight-decay X   (default 1e-4)   --momentum X (default 0.9)
  --schedule S       step (÷10 at 50% and 75%) | cosine (default step)
  --warmup-epochs N  linear warm-up (default 0)
  --label-smoothing X (default 0)     --no-augment    --limit N (use the first N images)
  --download         CIFAR: fetch the official archive (MD5 verified) if its files are missing
  --seed N           (default 1)      --backend cpu|cuda          --threads N
  --precision P      fp32 | bf16 | fp16: convolutions and linear layers in bfloat16 or float16
                     (mixed precision, float32 weights and statistics; fp16 with loss scaling) (default fp32)
  --memory-limit SIZE  cap the backend's tensor memory, e.g. 2GiB, 512MiB (default: none); a run
                     that reaches it stops with an error and keeps its last checkpoint
  --out DIR          output folder (default runs/<model>-<depth>-<dataset>)
  --resume           continue from the checkpoint in --out (with the same number of processes)
  --nproc N          data-parallel training in N processes on this machine (Gloo on the CPU,
                     NCCL on GPUs), --batch images each; --threads is per process
  --nnodes M --node-rank R --master-addr A --master-port P
                     with --nproc: this machine's part of a job on M machines (see launch)
launch: cudnn-resnet launch --nproc N [--nnodes M --node-rank R --master-addr A --master-port P] script.mjs [args]
  starts N processes of script with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set
  (defaults: --nnodes 1 --node-rank 0 --master-addr 127.0.0.1 --master-port 29500); forwards
  SIGINT/SIGTERM; when one process fails, stops the others and exits non-zero naming its rank
eval options:
  --checkpoint FILE  a checkpoint.safetensors written by train; --data, --dataset, --limit, --backend
convert options:
  --key K            the state dict's key in a checkpoint that holds more (default: state_dict, model_state_dict or model)
  --strip-prefix P   remove P from the keys that start with it (module. from DataParallel)
export options:
  --checkpoint FILE  a checkpoint.safetensors written by train (required)
  --onnx FILE        the ONNX model to write (required)
  --opset N          ONNX operator set, 13 to 22 (default 17)
  --batch N          a fixed batch size (default: any batch size)
experiment degradation options:
  --depths A,B       (default 20,56)  --epochs N (default 4)  --dataset, --data, --limit, --batch, --lr, --out DIR (default runs/degradation)
`;

function fail(message: string): never {
  const err = new Error(message);
  (err as Error & { usage: boolean }).usage = true;
  throw err;
}

function num(name: string, v: string | undefined, def: number, opts: { int?: boolean; min?: number } = {}): number {
  if (v === undefined) return def;
  const x = Number(v);
  if (!Number.isFinite(x) || (opts.int && !Number.isInteger(x)) || (opts.min !== undefined && x < opts.min)) {
    fail(`--${name}: expected ${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got '${v}'`);
  }
  return x;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 2 ** 10, m: 1e6, mb: 1e6, mib: 2 ** 20, g: 1e9, gb: 1e9, gib: 2 ** 30, t: 1e12, tb: 1e12, tib: 2 ** 40 };

/** A byte count such as 1500000, 512MiB, 2GB or 1.5GiB. */
export function parseBytes(name: string, v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  const bytes = m && unit !== undefined ? Math.round(Number(m[1]) * unit) : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) fail(`--${name}: expected a size such as 2GiB, 512MiB or 1000000 (bytes), got '${v}'`);
  return bytes;
}

function oneOf<T extends string>(name: string, v: string | undefined, allowed: readonly T[], def: T): T {
  if (v === undefined) return def;
  if (!(allowed as readonly string[]).includes(v)) fail(`--${name}: expected one of ${allowed.join(', ')}, got '${v}'`);
  return v as T;
}

const OPTIONS = {
  model: { type: 'string' }, depth: { type: 'string' }, widen: { type: 'string' }, shortcut: { type: 'string' },
  'drop-path': { type: 'string' }, dataset: { type: 'string' }, data: { type: 'string' }, epochs: { type: 'string' },
  batch: { type: 'string' }, lr: { type: 'string' }, 'weight-decay': { type: 'string' }, momentum: { type: 'string' },
  schedule: { type: 'string' }, 'warmup-epochs': { type: 'string' }, 'label-smoothing': { type: 'string' },
  'no-augment': { type: 'boolean' }, download: { type: 'boolean' }, limit: { type: 'string' }, seed: { type: 'string' }, backend: { type: 'string' },
  threads: { type: 'string' }, 'memory-limit': { type: 'string' }, out: { type: 'string' }, resume: { type: 'boolean' }, checkpoint: { type: 'string' },
  depths: { type: 'string' }, precision: { type: 'string' }, key: { type: 'string' }, 'strip-prefix': { type: 'string' }, onnx: { type: 'string' },
  opset: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  nproc: { type: 'string' }, nnodes: { type: 'string' }, 'node-rank': { type: 'string' }, 'master-addr': { type: 'string' },
  'master-port': { type: 'string' },
} as const;

const LAUNCH_OPTIONS = ['nproc', 'nnodes', 'node-rank', 'master-addr', 'master-port'] as const;

function launchOptions(v: Partial<Record<(typeof LAUNCH_OPTIONS)[number], string>>, command: string[]): LaunchOptions {
  const nnodes = num('nnodes', v.nnodes, 1, { int: true, min: 1 });
  const nodeRank = num('node-rank', v['node-rank'], 0, { int: true, min: 0 });
  if (nodeRank >= nnodes) fail(`--node-rank: expected a value below --nnodes ${nnodes}, got ${nodeRank}`);
  const masterPort = num('master-port', v['master-port'], 29500, { int: true, min: 1 });
  if (masterPort > 65535) fail(`--master-port: expected a port up to 65535, got ${masterPort}`);
  return {
    nproc: num('nproc', v.nproc, 1, { int: true, min: 1 }), nnodes, nodeRank, masterPort,
    masterAddr: v['master-addr'] ?? '127.0.0.1', command, log: (l) => console.error(l),
  };
}

/** `launch [options] script [args]`: the launcher's own options come before the script. */
async function launchCommand(argv: string[]): Promise<number> {
  const at = argv.findIndex((a, i) => !a.startsWith('--') && (i === 0 || !LAUNCH_OPTIONS.includes(argv[i - 1]!.slice(2) as never)));
  if (at < 0) fail('launch: expected a script to run (cudnn-resnet launch --nproc N script.mjs [args])');
  const { values } = parseArgs({ args: argv.slice(0, at), options: Object.fromEntries(LAUNCH_OPTIONS.map((k) => [k, { type: 'string' }])), strict: true });
  return launch(launchOptions(values as Record<string, string>, [process.execPath, ...argv.slice(at)]));
}

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function runOptions(v: Values, defaults: Partial<RunOptions> = {}): RunOptions {
  const d = { ...DEFAULTS, ...defaults };
  const model = oneOf('model', v.model, ['resnet', 'plain', 'preact', 'wrn', 'resnet18', 'resnet34', 'resnet50'] as const, d.model);
  const depth = num('depth', v.depth, model === 'wrn' ? 16 : model === 'preact' ? 164 : d.depth, { int: true, min: 1 });
  const dataset = oneOf('dataset', v.dataset, ['fashion-mnist', 'cifar10', 'cifar100'] as const, d.dataset);
  const o: RunOptions = {
    model, depth, dataset,
    widen: num('widen', v.widen, d.widen, { int: true, min: 1 }),
    shortcut: oneOf('shortcut', v.shortcut, ['A', 'B'] as const, d.shortcut),
    dropPath: num('drop-path', v['drop-path'], d.dropPath, { min: 0 }),
    epochs: num('epochs', v.epochs, d.epochs, { int: true, min: 1 }),
    batch: num('batch', v.batch, d.batch, { int: true, min: 1 }),
    lr: num('lr', v.lr, d.lr, { min: 0 }),
    weightDecay: num('weight-decay', v['weight-decay'], d.weightDecay, { min: 0 }),
    momentum: num('momentum', v.momentum, d.momentum, { min: 0 }),
    schedule: oneOf('schedule', v.schedule, ['step', 'cosine'] as const, d.schedule),
    warmupEpochs: num('warmup-epochs', v['warmup-epochs'], d.warmupEpochs, { int: true, min: 0 }),
    labelSmoothing: num('label-smoothing', v['label-smoothing'], d.labelSmoothing, { min: 0 }),
    augment: !v['no-augment'],
    seed: num('seed', v.seed, d.seed, { int: true, min: 0 }),
    precision: oneOf('precision', v.precision, ['fp32', 'bf16', 'fp16'] as const, d.precision),
    out: v.out ?? join('runs', `${model}${model.startsWith('resnet') && model !== 'resnet' ? '' : `-${depth}`}-${dataset}`),
  };
  if (v.data !== undefined) o.data = v.data;
  if (v.limit !== undefined) o.limit = num('limit', v.limit, 0, { int: true, min: 1 });
  if (v.download) o.download = true;
  if (v.backend !== undefined) o.backend = oneOf('backend', v.backend, ['cpu', 'cuda'] as const, 'cpu') as BackendName;
  return o;
}

async function train(v: Values, argv: string[]): Promise<number> {
  if (v.nproc !== undefined) {
    // Each process runs this same command without the launcher's options; WORLD_SIZE tells it
    // to train in the process group.
    const own = argv.filter((a, i) => !LAUNCH_OPTIONS.some((k) => a === `--${k}` || a.startsWith(`--${k}=`) || argv[i - 1] === `--${k}`));
    return launch(launchOptions(v, [process.execPath, fileURLToPath(new URL('../../bin/cudnn-resnet.js', import.meta.url)), ...own]));
  }
  const o = runOptions(v);
  const started = performance.now();
  if (v['memory-limit'] !== undefined) setMemoryLimit(parseBytes('memory-limit', v['memory-limit']), o.backend);
  let r;
  try {
    r = await runTraining(o, { resume: Boolean(v.resume), progress: true, log: (l) => console.log(l) });
    if (!r) return 0;
  } catch (err) {
    // Checkpoints are replaced atomically, so whatever stopped the run, the last one is whole.
    const { checkpoint } = runFiles(o.out);
    if (err instanceof Error && existsSync(checkpoint)) {
      const { epoch } = await readCheckpointState(checkpoint);
      err.message += `\nthe checkpoint of epoch ${epoch} is kept in ${checkpoint}: continue with --resume --out ${o.out}`;
    }
    throw err;
  }
  const last = r.history.at(-1)!;
  console.log(`test accuracy: ${(100 * (1 - (last.testError ?? Number.NaN))).toFixed(2)}% after ${last.epoch} epochs (${((performance.now() - started) / 60000).toFixed(1)} min)`);
  console.log(`checkpoint: ${r.checkpoint}`);
  console.log(`weights:    ${r.weights}`);
  console.log(`curves:     ${r.curves}`);
  console.log(`metrics:    ${r.metrics}`);
  return 0;
}

async function evalCommand(v: Values): Promise<void> {
  if (!v.checkpoint) fail('eval: --checkpoint FILE is required');
  const state = await readCheckpointState(v.checkpoint);
  const saved = state.options as RunOptions;
  const o: RunOptions = { ...saved };
  if (v.data !== undefined) o.data = v.data;
  if (v.dataset !== undefined) o.dataset = oneOf('dataset', v.dataset, ['fashion-mnist', 'cifar10', 'cifar100'] as const, saved.dataset);
  if (v.limit !== undefined) o.limit = num('limit', v.limit, 0, { int: true, min: 1 });
  else delete o.limit;
  if (v.backend !== undefined) o.backend = oneOf('backend', v.backend, ['cpu', 'cuda'] as const, 'cpu') as BackendName;
  const testSet = await loadDataset(o, 'test');
  const model = buildModel(o, testSet.channels, testSet.classes);
  try {
    await loadCheckpoint(v.checkpoint, { model, ...(o.backend ? { backend: o.backend } : {}) });
    const { test } = loaders(o, testSet, testSet);
    const r = await evaluate(model, test, 0, { precision: o.precision ?? 'fp32' });
    console.log(`${v.checkpoint} (epoch ${state.epoch}) on ${o.dataset} test, ${r.images} images: ` +
      `accuracy ${(100 * (1 - r.error)).toFixed(2)}%, top-1 error ${(100 * r.error).toFixed(2)}%, loss ${r.loss.toFixed(4)}`);
  } finally {
    model.dispose();
  }
}

/** Runs the CLI with `argv` (without node and the script); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'launch') {
    try {
      return await launchCommand(argv.slice(1));
    } catch (err) {
      console.error(`cudnn-resnet: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    console.error(`cudnn-resnet: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values: v, positionals: [command, sub, ...rest] } = parsed;
  if (v.help || command === undefined || command === 'help') {
    console.log(USAGE);
    return command === undefined && !v.help ? 2 : 0;
  }
  try {
    if (v.threads !== undefined) setNumThreads(num('threads', v.threads, 1, { int: true, min: 1 }));
    const positionals = command === 'convert' ? 2 : command === 'experiment' ? 1 : 0;
    const extra = [sub, ...rest].filter((a) => a !== undefined).slice(positionals);
    if (extra.length > 0) fail(`unexpected argument '${extra[0]}'`);
    switch (command) {
      case 'info':
        console.log(infoReport());
        return 0;
      case 'train':
        return await train(v, argv);
      case 'eval':
        await evalCommand(v);
        return 0;
      case 'convert': {
        const [output] = rest;
        if (sub === undefined || output === undefined) fail('convert: expected IN.pth OUT.safetensors');
        console.log(await convert(sub, output, { ...(v.key === undefined ? {} : { key: v.key }), ...(v['strip-prefix'] === undefined ? {} : { stripPrefix: v['strip-prefix'] }) }));
        return 0;
      }
      case 'export':
        if (!v.checkpoint || !v.onnx) fail('export: --checkpoint FILE and --onnx FILE are required');
        console.log(await exportCheckpoint(v.checkpoint, v.onnx, {
          ...(v.opset === undefined ? {} : { opset: num('opset', v.opset, 17, { int: true, min: 1 }) }),
          ...(v.batch === undefined ? {} : { batch: num('batch', v.batch, 1, { int: true, min: 1 }) }),
        }));
        return 0;
      case 'experiment':
        if (sub !== 'degradation') fail(`experiment: unknown experiment '${sub ?? ''}' (available: degradation)`);
        await degradation(v.depths, runOptions(v, { epochs: 4 }), (l) => console.log(l));
        return 0;
      default:
        fail(`unknown command '${command}'`);
    }
  } catch (err) {
    const e = err as Error & { usage?: boolean };
    console.error(`cudnn-resnet: ${e.message}${e.usage ? `\n\n${USAGE}` : ''}`);
    return e.usage ? 2 : 1;
  }
}
