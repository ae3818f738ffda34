/**
 * Training throughput on the CUDA backend: ResNet-20 (CIFAR shape, batch 128) and ResNet-50
 * (224x224, batch 64), float32 with TF32 convolutions on and off, or (--precision bf16) under
 * amp.autocast in bfloat16 (NHWC on cuDNN, fused batch-norm tails where cuDNN has them), in
 * images per second; each step eager (every op launched by the worker) and captured
 * (`train.captureStep`: one CUDA graph replayed per step, after the warm-up steps, which also
 * capture it). Run by scripts/gpu-check.sh next to bench/gpu_torch.py with the same
 * --precision, alternating the two processes; bench/gpu-report.ts prints both.
 *
 *     node --import tsx bench/gpu.ts [--precision fp32|bf16] [--reps 10] [--warmup 3] [--json out.json] [--dry-run]
 *
 * --dry-run checks the arguments and the library's import, says whether the CUDA backend is
 * usable and what would run, and exits 0 without touching a GPU (scripts/gpu-check.sh --dry-run).
 */
import { writeFileSync } from 'node:fs';
import { type Tensor, amp, backends, models, ops, optim, randn, setTf32, sync, tensor, tidy, train } from '../lib/index.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const reps = Number(opt('reps', '10'));
const warmup = Number(opt('warmup', '3'));
const json = opt('json', '');
const dryRun = args.includes('--dry-run');
const precision = opt('precision', 'fp32');
if (!Number.isInteger(reps) || reps < 1 || !Number.isInteger(warmup) || warmup < 0 || (precision !== 'fp32' && precision !== 'bf16')) {
  console.error('bench/gpu.ts: --reps must be an integer >= 1, --warmup >= 0, --precision fp32 or bf16');
  process.exit(64);
}
// bf16: one row a model (TF32 does not apply to bfloat16 convolutions); fp32: TF32 on and off.
const tf32Settings = precision === 'bf16' ? [true] : [true, false];

const configs = [
  ['resnet20', 128, 32, 10],
  ['resnet50', 64, 224, 1000],
] as const;
const cuda = backends().find((b) => b.name === 'cuda')!;
if (dryRun) {
  console.log(`bench/gpu.ts --dry-run: would time ${configs.map(([m, b]) => `${m} batch ${b}`).join(' and ')}, ` +
    `${precision === 'bf16' ? 'amp.autocast bfloat16' : 'float32, TF32 on and off'}, eager and captured, ` +
    `${warmup} warm-up and ${reps} timed steps each; cuda here: ${cuda.available ? `available (${String(cuda.details.device)})` : `unavailable (${cuda.reason})`}`);
  process.exit(0);
}
if (!cuda.available) {
  console.error(`bench/gpu.ts: the CUDA backend is unavailable: ${cuda.reason}`);
  process.exit(2);
}

interface Row { model: string; batch: number; precision: 'fp32' | 'bf16'; tf32: boolean; captured: boolean; imgPerSec: number; msPerStep: number }
const rows: Row[] = [];

// The same networks as bench/gpu_torch.py: ResNet-20 with projection shortcuts, torchvision's ResNet-50.
const make = {
  resnet20: () => models.cifarResNet({ depth: 20, shortcut: 'B', seed: 1, backend: 'cuda' }),
  resnet50: () => models.resnet50({ seed: 1, backend: 'cuda' }),
};

for (const [model, batch, size, classes] of configs) {
  for (const tf32 of tf32Settings) {
    for (const captured of [false, true]) {
      setTf32(tf32);
      const net = make[model]();
      const x = randn([batch, 3, size, size], { backend: 'cuda', seed: 9 });
      const y = tensor(Int32Array.from({ length: batch }, (_, i) => i % classes), [batch], { backend: 'cuda', dtype: 'int32' });
      const sgd = new optim.SGD(net.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
      const forwardBackward = (xs: Tensor, ys: Tensor<'int32'>) => ops.softmaxCrossEntropy(net.forward(xs), ys).backward();
      const eager = (xs: Tensor, ys: Tensor<'int32'>) => {
        // As train.fit runs a bf16 step: forward and backward inside the autocast region.
        tidy(() => (precision === 'bf16' ? amp.autocast({ dtype: 'bfloat16' }, () => forwardBackward(xs, ys)) : forwardBackward(xs, ys)));
        sgd.step();
        sgd.zeroGrad();
      };
      // The capture needs at least one eager step before it (cuDNN's choices, momentum buffers).
      const step = train.captureStep(eager, { warmup: Math.max(1, warmup - 1), enabled: captured });
      for (let i = 0; i < Math.max(warmup, captured ? 2 : 0); i++) step(x, y);
      await sync('cuda');
      const mode = precision === 'bf16' ? 'bf16 autocast' : `tf32 ${tf32 ? 'on ' : 'off'}`;
      if (captured && !step.captured) {
        // Reported, and the other rows still run: an eager number labelled captured would mislead.
        console.error(`bench/gpu.ts: ${model} batch ${batch} ${mode}: the step was not captured: ${step.reason}`);
      } else {
        const t0 = performance.now();
        for (let i = 0; i < reps; i++) step(x, y);
        await sync('cuda');
        const ms = (performance.now() - t0) / reps;
        rows.push({ model, batch, precision, tf32, captured, imgPerSec: (batch * 1000) / ms, msPerStep: ms });
        console.log(`${model} batch ${batch} ${mode} ${captured ? 'captured' : 'eager   '}: ` +
          `${((batch * 1000) / ms).toFixed(1)} img/s (${ms.toFixed(1)} ms/step)`);
      }
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
