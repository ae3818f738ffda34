/**
 * Op benchmark: this library against PyTorch on the same CPU, threads and shapes, in one run.
 *
 *   npm run bench:ops -- [--threads 2] [--reps 10] [--warmup 3] [--no-torch] [--json out.json]
 *   (or npm run bench -- --ops [same options])
 *
 * Times every distinct convolution of CIFAR ResNet-20 (batch 128; forward, and backward = input
 * and weight gradients) and training-mode batch norm per stage. When `python3 -c 'import torch'`
 * works, bench/ops_torch.py times the same in PyTorch eager mode, NCHW and channels_last, and the
 * table gives ratios against PyTorch's faster layout. Each number is the median of `reps` timed
 * repetitions after `warmup` untimed ones. Whole networks: `npm run bench` (bench/index.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Stat, summarize } from './harness.js';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    reps: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    'no-torch': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const threads = Number(args.threads);
const reps = Number(args.reps);
const warmup = Number(args.warmup);
// OpenMP reads its thread count when the addon loads: set it before importing the library.
process.env.OMP_NUM_THREADS = String(threads);

const { backends, noGrad, ops, randn, ones, zeros, sync, tidy, setNumThreads } = await import('../lib/index.js');
type Tensor = import('../lib/index.js').Tensor;

const BATCH = 128;
const here = dirname(fileURLToPath(import.meta.url));

interface OpResult extends Stat { name: string; phase: 'forward' | 'backward' }

/** Times `fn` (which enqueues work) until its work has run: enqueue + execution + one sync. */
async function time(fn: () => void | Promise<void>, setup?: () => void): Promise<Stat> {
  const samples: number[] = [];
  for (let i = 0; i < warmup + reps; i++) {
    setup?.();
    await sync('cpu');
    const start = performance.now();
    await fn();
    await sync('cpu');
    if (i >= warmup) samples.push(performance.now() - start);
  }
  return summarize(samples);
}

const CONV_SHAPES: [number, number, number, number, number][] = [
  [3, 16, 32, 1, 3], [16, 16, 32, 1, 3], [16, 32, 32, 2, 3], [32, 32, 16, 1, 3],
  [32, 64, 16, 2, 3], [64, 64, 8, 1, 3], [16, 32, 32, 2, 1], [32, 64, 16, 2, 1],
];
const BN_SHAPES: [number, number][] = [[16, 32], [32, 16], [64, 8]];

async function convOps(): Promise<OpResult[]> {
  const out: OpResult[] = [];
  for (const [cin, cout, size, stride, k] of CONV_SHAPES) {
    const name = `conv ${cin}->${cout} ${k}x${k} s${stride} @${size}`;
    const x = randn([BATCH, cin, size, size], { seed: 1, requiresGrad: true });
    const w = randn([cout, cin, k, k], { seed: 2, std: 0.1, requiresGrad: true });
    const opts = { stride, padding: (k - 1) / 2 };
    out.push({ name, phase: 'forward', ...(await time(() => noGrad(() => tidy(() => { ops.conv2d(x, w, opts); })))) });
    let y: Tensor | null = null;
    const dy = randn([BATCH, cout, size / stride, size / stride], { seed: 3 });
    out.push({
      name, phase: 'backward',
      ...(await time(() => { y!.backward(dy); }, () => {
        y?.dispose();
        x.grad = null;
        w.grad = null;
        y = ops.conv2d(x, w, opts);
      })),
    });
    for (const t of [x, w, dy, y as Tensor | null]) t?.dispose();
    report(out.at(-2)!);
    report(out.at(-1)!);
  }
  return out;
}

async function batchNormOps(): Promise<OpResult[]> {
  const out: OpResult[] = [];
  for (const [c, size] of BN_SHAPES) {
    const name = `batchnorm ${c} @${size}`;
    // As in the network, the input comes from a convolution (the backend's blocked layout).
    const src = randn([BATCH, c, size, size], { seed: 4 });
    const mix = randn([c, c, 1, 1], { seed: 5, std: 0.2 });
    const x = noGrad(() => ops.conv2d(src, mix));
    x.requiresGrad = true;
    const weight = ones([c], { requiresGrad: true });
    const bias = zeros([c], { requiresGrad: true });
    const runningMean = zeros([c]);
    const runningVar = ones([c]);
    const bn = { weight, bias, runningMean, runningVar, training: true };
    out.push({ name, phase: 'forward', ...(await time(() => noGrad(() => tidy(() => { ops.batchNorm2d(x, bn); })))) });
    let y: Tensor | null = null;
    const dy = noGrad(() => ops.conv2d(randn([BATCH, c, size, size], { seed: 6 }), mix));
    out.push({
      name, phase: 'backward',
      ...(await time(() => { y!.backward(dy); }, () => {
        y?.dispose();
        for (const t of [x, weight, bias]) t.grad = null;
        y = ops.batchNorm2d(x, bn);
      })),
    });
    for (const t of [src, mix, x, weight, bias, runningMean, runningVar, dy, y as Tensor | null]) t?.dispose();
    report(out.at(-2)!);
    report(out.at(-1)!);
  }
  return out;
}

function report(r: OpResult): void {
  console.log(`  ${r.name.padEnd(28)} ${r.phase.padEnd(8)} median ${r.medianMs.toFixed(2).padStart(8)} ms  (min ${r.minMs.toFixed(2)}, max ${r.maxMs.toFixed(2)})`);
}

interface TorchResult { version: string; channelsLast: boolean; ops: OpResult[] }

function runTorch(channelsLast: boolean): TorchResult | string {
  const probe = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) return 'PyTorch not installed (python3 -c "import torch" failed)';
  const dir = mkdtempSync(join(tmpdir(), 'bench-ops-'));
  const file = join(dir, 'torch.json');
  try {
    execFileSync('python3', [join(here, 'ops_torch.py'), '--threads', String(threads), '--reps', String(reps), '--warmup', String(warmup),
      ...(channelsLast ? ['--channels-last'] : []), '--json', file],
    { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
    return JSON.parse(readFileSync(file, 'utf8')) as TorchResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (v: number | undefined, digits = 2) => (v === undefined ? '—' : v.toFixed(digits));

setNumThreads(threads);
const cpu = backends().find((b) => b.name === 'cpu')!;
const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} logical cores; ${threads} threads; oneDNN ${cpu.versions.onednn} (${String(cpu.details.isa)})`;
console.log(`cudnn-resnet op benchmark: ${machine}; batch ${BATCH}; ${warmup} warm-up + ${reps} reps`);
console.log('this library (cpu):');
const ours = { ops: [...(await convOps()), ...(await batchNormOps())] };

const torch: Record<string, TorchResult | string> = {};
if (!args['no-torch']) {
  for (const cl of [false, true]) {
    console.log(`PyTorch (${cl ? 'channels_last' : 'NCHW'}):`);
    torch[cl ? 'channelsLast' : 'nchw'] = runTorch(cl);
  }
}
const nchw = typeof torch.nchw === 'object' ? torch.nchw : null;
const cl = typeof torch.channelsLast === 'object' ? torch.channelsLast : null;

const lines: string[] = [];
lines.push(`| op | phase | cudnn-resnet ms | PyTorch NCHW ms | PyTorch channels_last ms | PyTorch best / ours |`);
lines.push('|---|---|---:|---:|---:|---:|');
for (const r of ours.ops) {
  const a = nchw?.ops.find((o) => o.name === r.name && o.phase === r.phase)?.medianMs;
  const b = cl?.ops.find((o) => o.name === r.name && o.phase === r.phase)?.medianMs;
  const best = a === undefined && b === undefined ? undefined : Math.min(a ?? Infinity, b ?? Infinity);
  lines.push(`| ${r.name} | ${r.phase} | ${fmt(r.medianMs)} | ${fmt(a)} | ${fmt(b)} | ${best === undefined ? '—' : `${fmt(best / r.medianMs)}×`} |`);
}
const notes = Object.entries(torch).filter(([, v]) => typeof v === 'string').map(([k, v]) => `PyTorch ${k}: ${v as string}`);
console.log(`\n${machine}\n`);
console.log(lines.join('\n'));
for (const n of notes) console.log(n);

const result = { machine, threads, reps, warmup, batch: BATCH, ours, torch, table: lines.join('\n'), date: new Date().toISOString() };
const jsonPath = args.json ?? join(here, 'results', 'ops.json');
mkdirSync(dirname(jsonPath), { recursive: true });
writeFileSync(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
console.log(`\nwrote ${jsonPath}`);
