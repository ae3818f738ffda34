#!/usr/bin/env node
// NCCL on a GPU machine, for scripts/gpu-check.sh: a process group of one rank on the cuda
// backend (NCCL refuses two ranks on one GPU), its collectives on an odd size against the values
// they must give, and one DDP training step of a small ResNet against the same step without DDP.
// With one rank every collective is the identity (a mean over one rank, a gather of one part), so
// the expected values are exact; what this checks is that NCCL loads, builds a communicator,
// launches on the backend's stream in order with the ops around it, and that DDP's buckets land
// in the right gradients. Multi-GPU runs need a machine with more GPUs (README, "Distributed").
//
//   node scripts/gpu-check-nccl.mjs        (from the repository root, with dist/ built)
//
// Exit status: 0 passed; 1 a check failed; 4 no usable cuda backend; 5 NCCL cannot be loaded
// (put the nvidia-nccl wheel's lib/ on LD_LIBRARY_PATH). One JSON line per check on stdout.
import { createServer } from 'node:net';

const lib = await import(new URL('../dist/index.js', import.meta.url).href);
const { backends, distributed, models, nn, ops, optim, randn, tidy } = lib;

const cuda = backends().find((b) => b.name === 'cuda');
if (!cuda?.available) {
  console.error(`gpu-check-nccl: the cuda backend is unavailable: ${cuda?.reason}`);
  process.exit(4);
}
const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
try {
  await distributed.init({ backend: 'nccl', rank: 0, worldSize: 1, masterPort: port, timeoutMs: 60_000 });
} catch (err) {
  console.error(`gpu-check-nccl: ${err.code ?? ''} ${err.message}`);
  process.exit(err.code === 'ERR_DIST_UNSUPPORTED' ? 5 : 1);
}

let failed = 0;
const report = (check, ok, detail) => {
  if (!ok) failed++;
  console.log(JSON.stringify({ check, ok, ...detail }));
};
const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

const n = 1_000_003;
const x = randn([n], { seed: 1, backend: 'cuda' });
const want = await x.data();
for (const op of ['sum', 'mean', 'max']) {
  const y = distributed.allReduce(x, { op });
  report(`allReduce ${op}`, maxDiff(await y.data(), want) === 0, {});
  y.dispose();
}
const b = distributed.broadcast(x, { root: 0 });
report('broadcast', maxDiff(await b.data(), want) === 0, {});
const g = distributed.allGather(x);
report('allGather', g.shape.join() === `1,${n}` && maxDiff(await g.data(), want) === 0, { shape: g.shape });
for (const t of [b, g]) t.dispose();
await distributed.barrier();
report('barrier', true, {});

// One DDP step (buckets of 0.05 MiB: several NCCL all-reduces) against the same step alone.
const images = randn([8, 3, 16, 16], { seed: 2, backend: 'cuda' });
const labels = [0, 1, 2, 3, 0, 1, 2, 3];
const step = (model, forward) => {
  const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
  tidy(() => ops.softmaxCrossEntropy(forward(images), labels).backward());
  opt.step();
  opt.dispose();
};
const alone = models.cifarResNet({ depth: 8, seed: 3, numClasses: 4, backend: 'cuda' });
const wrapped = models.cifarResNet({ depth: 8, seed: 3, numClasses: 4, backend: 'cuda' });
const ddp = new nn.DistributedDataParallel(wrapped, { bucketMB: 0.05 });
step(alone, (t) => alone.forward(t));
step(wrapped, (t) => ddp.forward(t));
let worst = 0;
const [pa, pw] = [alone.parameters(), wrapped.parameters()];
for (let i = 0; i < pa.length; i++) {
  const [va, vw] = [await pa[i].data(), await pw[i].data()];
  const scale = Math.max(1e-3, ...Array.from(va, Math.abs));
  worst = Math.max(worst, maxDiff(vw, va) / scale);
}
// The same kernels on the same inputs: only cuDNN's choice of algorithm could differ between the
// two models, within float32 rounding.
report('DDP step', worst <= 1e-5, { parameters: pa.length, worstRelativeDifference: worst });
for (const t of [x, images]) t.dispose();
ddp.dispose();
alone.dispose();
await distributed.destroy();
console.log(JSON.stringify({ nccl: failed === 0 ? 'passed' : `${failed} check(s) failed`, device: cuda.details?.device }));
process.exit(failed === 0 ? 0 : 1);
