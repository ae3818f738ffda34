/**
 * Training throughput on the CUDA backend: ResNet-20 (CIFAR shape, batch 128) and ResNet-50
 * (224x224, batch 64), float32 with TF32 convolutions on and off, in images per second; each
 * step eager (every op launched by the worker) and captured (`train.captureStep`: one CUDA
 * graph replayed per step, after the warm-up steps, which also capture it).
 * Run by scripts/gpu-check.sh next to bench/gpu_torch.py; bench/gpu-report.ts prints both.
 *
 *     node --import tsx bench/gpu.ts [--reps 10] [--warmup 3] [--json out.json] [--dry-run]
 *
 * --dry-run checks the arguments and the library's import, says whether the CUDA backend is
 * usable and what would run, and exits 0 without touching a GPU (scripts/gpu-check.sh --dry-run).
 */
import { writeFileSync } from 'node:fs';
import { type Tensor, backends, models, ops, optim, randn, setTf32, sync, tensor, tidy, train } from '../lib/index.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const reps = Number(opt('reps', '10'));
const warmup = Number(opt('warmup', '3'));
const json = opt('json', '');
const dryRun = args.includes('--dry-run');
if (!Number.isInteger(reps) || reps < 1 || !Number.isInteger(warmup) || warmup < 0) {
  console.error('bench/gpu.ts: --reps must be an integer >= 1 and --warmup >= 0');
  process.exit(64);
}

const configs = [
  ['resnet20', 128, 32, 10],
  ['resnet50', 64, 224, 1000],
] as const;
const cuda = backends().find((b) => b.name === 'cuda')!;
if (dryRun) {
  console.log(`bench/gpu.ts --dry-run: would time ${configs.map(([m, b]) => `${m} batch ${b}`).join(' and ')}, TF32 on and off, eager and captured, ` +
    `${warmup} warm-up and ${reps} timed steps each; cuda here: ${cuda.available ? `available (${String(cuda.details.device)})` : `unavailable (${cuda.reason})`}`);
  process.exit(0);
}
if (!cuda.available) {
  console.error(`bench/gpu.ts: the CUDA backend is unavailable: ${cuda.reason}`);
  process.exit(2);
}

interface Row { model: string; batch: number; tf32: boolean; captured: boolean; imgPerSec: number; msPerStep: number }
const rows: Row[] = [];

// The same networks as bench/gpu_torch.py: ResNet-20 with projection shortcuts, torchvision's ResNet-50.
const make = {
  resnet20: () => models.cifarResNet({ depth: 20, shortcut: 'B', seed: 1, backend: 'cuda' }),
  resnet50: () => models.resnet50({ seed: 1, backend: 'cuda' }),
};

for (const [model, batch, size, classes] of configs) {
  for (const tf32 of [true, false]) {
    for (const captured of [false, true]) {
      setTf32(tf32);
      const net = make[model]();
      const x = randn([batch, 3, size, size], { backend: 'cuda', seed: 9 });
      const y = tensor(Int32Array.from({ length: batch }, (_, i) => i % classes), [batch], { backend: 'cuda', dtype: 'int32' });
      const sgd = new optim.SGD(net.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
      const eager = (xs: Tensor, ys: Tensor<'int32'>) => {
        tidy(() => ops.softmaxCrossEntropy(net.forward(xs), ys).backward());
        sgd.step();
        sgd.zeroGrad();
      };
      // The capture needs at least one eager step before it (cuDNN's choices, momentum buffers).
      const step = train.captureStep(eager, { warmup: Math.max(1, warmup - 1), enabled: captured });
      for (let i = 0; i < Math.max(warmup, captured ? 2 : 0); i++) step(x, y);
      await sync('cuda');
      if (captured && !step.captured) throw new Error(`bench/gpu.ts: ${model}: the step was not captured: ${step.reason}`);
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) step(x, y);
      await sync('cuda');
      const ms = (performance.now() - t0) / reps;
      rows.push({ model, batch, tf32, captured, imgPerSec: (batch * 1000) / ms, msPerStep: ms });
      console.log(`${model} batch ${batch} tf32 ${tf32 ? 'on ' : 'off'} ${captured ? 'captured' : 'eager   '}: ` +
        `${((batch * 1000) / ms).toFixed(1)} img/s (${ms.toFixed(1)} ms/step)`);
      step.dispose();
      sgd.dispose();
      net.dispose();
      x.dispose();
      y.dispose();
    }
  }
}
if (json) {
  writeFileSync(json, JSON.stringify({ device: cuda.details.device, versions: cuda.versions, cudnnLibrary: cuda.details.cudnnLibrary, rows }, null, 2));
}
