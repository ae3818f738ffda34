/**
 * Distributed training on this machine: two ranks of one thread each, over loopback, as the
 * issue's CI budget allows. Each rank is a child process (scripts written into a folder inside
 * the package, so that `import 'cudnn-resnet'` resolves to it); each test bounds its children's
 * time, so a hang fails the test instead of stalling the suite.
 *
 * Tolerances: a Gloo sum of two float32 values is one float32 addition (relative error at most
 * 2^-24 against the float64 sum). DDP's mean gradient is (g0 + g1) / 2; the reference computes
 * the same two per-rank gradients in one process with the loss scaled by 1/2 (a power of two:
 * every gradient is exactly halved) and accumulated, g0/2 + g1/2, which is the same number, and
 * on the same thread count oneDNN computes g0 and g1 in the same order. The parameters should
 * therefore agree bit for bit; the test allows 1e-5 relative (the bound) so that a
 * change of oneDNN's summation order alone does not fail it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { backends, distributed, models, nn, ops, optim, profile, randn, setNumThreads, tensor, tidy } from '../lib/index.js';
import { bindingOf } from '../lib/backend/load.js';
import { StoreClient, StoreServer } from '../lib/distributed/store.js';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin', 'cudnn-resnet.js');
const dir = mkdtempSync(join(root, 'test', '.dist-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Exit {
  code: number | null;
  signal: string | null;
  out: string;
}

/** Runs `node args` with `env`; kills it after `limitMs` (a bound on a hang, not a timing). */
function run(args: string[], env: Record<string, string>, limitMs = 90_000): Promise<Exit> {
  return new Promise((resolve) => {
    const child: ChildProcess = spawn(process.execPath, args, {
      cwd: root, env: { ...process.env, OMP_NUM_THREADS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
}

function script(name: string, code: string): string {
  const file = join(dir, name);
  writeFileSync(file, code);
  return file;
}

/** Both ranks of a two-process job started directly (no launcher). */
async function pair(file: string, extra: (rank: number) => Record<string, string> = () => ({}), limitMs?: number): Promise<[Exit, Exit]> {
  const port = String(await freePort());
  return Promise.all([0, 1].map((r) => run([file], { RANK: String(r), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, ...extra(r) }, limitMs))) as Promise<[Exit, Exit]>;
}

describe('collectives over Gloo, 2 ranks', () => {
  test('all-reduce (sum, mean, max) of odd sizes, broadcast, all-gather and a 100 MB all-reduce match float64 references', async () => {
    const file = script('collectives.mjs', `
import { distributed as d, randn, tensor } from 'cudnn-resnet';
await d.init({ timeoutMs: 60000 });
const r = d.rank();
const fails = [];
const close = (name, got, want, tol) => {
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * Math.max(1, Math.abs(want[i])))) { fails.push(name + ' [' + i + '] ' + got[i] + ' vs ' + want[i]); return; }
  }
};
for (const n of [1, 7, 1000003]) {
  const mine = randn([n], { seed: 100 + r }), other = randn([n], { seed: 101 - r });
  const [a, b] = [await mine.data(), await other.data()];
  const sum = Float64Array.from(a, (v, i) => v + b[i]);
  close('sum ' + n, await d.allReduce(mine).data(), sum, 2 ** -24);
  close('mean ' + n, await d.allReduce(mine, { op: 'mean' }).data(), sum.map((v) => v / 2), 2 ** -24);
  close('max ' + n, await d.allReduce(mine, { op: 'max' }).data(), Float64Array.from(a, (v, i) => Math.max(v, b[i])), 0);
  close('broadcast ' + n, await d.broadcast(mine, { root: 1 }).data(), r === 1 ? a : b, 0);
  const g = d.allGather(mine);
  if (g.shape.join() !== [2, n].join()) fails.push('allGather shape ' + g.shape);
  close('allGather ' + n, await g.data(), r === 0 ? [...a, ...b] : [...b, ...a], 0);
}
const big = 25 * 2 ** 20 + 3;
const values = new Float32Array(big);
for (let i = 0; i < big; i++) values[i] = (i % 1000) * (r + 1);
const t0 = performance.now();
const total = await d.allReduce(tensor(values, [big])).data();
const seconds = (performance.now() - t0) / 1000;
for (let i = 0; i < big; i += 4099) if (total[i] !== (i % 1000) * 3) { fails.push('100MB at ' + i); break; }
if (total[big - 1] !== ((big - 1) % 1000) * 3) fails.push('100MB last');
await d.barrier();
await d.destroy();
console.log(JSON.stringify({ rank: r, fails, mbPerSecond: (big * 4) / 2 ** 20 / seconds }));
`);
    const [a, b] = await pair(file);
    for (const e of [a, b]) {
      expect(e.code, e.out).toBe(0);
      const line = JSON.parse(e.out.trim().split('\n').at(-1)!) as { fails: string[]; mbPerSecond: number };
      expect(line.fails).toEqual([]);
      // One cold 100 MiB all-reduce: its upload, fresh buffers (their first touch page-faults) and readback dominate; bench/distributed.ts measures the warm bandwidth.
      console.log(`distributed: one cold 100 MiB all-reduce, upload and readback included: ${line.mbPerSecond.toFixed(0)} MiB/s`);
    }
  });
});

describe('distributed.init', () => {
  test('a MASTER_ADDR that does not resolve is a clear error', async () => {
    const file = script('bad-addr.mjs', `
import { distributed as d } from 'cudnn-resnet';
try { await d.init({ rank: 1, worldSize: 2, masterAddr: 'no-such-host.invalid', timeoutMs: 20000 }); } catch (e) { console.log(e.code, e.message); process.exit(3); }
`);
    const e = await run([file], {});
    expect(e.code).toBe(3);
    expect(e.out).toMatch(/ERR_DIST_RENDEZVOUS .*MASTER_ADDR 'no-such-host.invalid' does not resolve/);
  });

  test('nothing listening on MASTER_PORT fails after timeoutMs, naming the address', async () => {
    const port = await freePort();
    const file = script('no-master.mjs', `
import { distributed as d } from 'cudnn-resnet';
try { await d.init({ rank: 1, worldSize: 2, masterPort: ${port}, timeoutMs: 1500 }); } catch (e) { console.log(e.code, e.message); process.exit(3); }
`);
    const e = await run([file], {});
    expect(e.code).toBe(3);
    expect(e.out).toContain(`could not reach the rendezvous at 127.0.0.1:${port}`);
  });

  test('ranks started with different world sizes both fail at init, saying so', async () => {
    const file = script('mismatch.mjs', `
import { distributed as d } from 'cudnn-resnet';
try { await d.init({ timeoutMs: 20000 }); } catch (e) { console.log(e.message); process.exit(3); }
`);
    const [a, b] = await pair(file, (r): Record<string, string> => (r === 1 ? { WORLD_SIZE: '3' } : {}));
    for (const e of [a, b]) {
      expect(e.code, e.out).toBe(3);
      expect(e.out).toContain('world size mismatch: rank 1 was started with a world size of 3, rank 0 with 2');
    }
  });

  test('a rank that says hello after another was refused (rank 0 too) gets the refusal, not a wait for the job that cannot form', async () => {
    // The order the test above leaves to chance: rank 1's mismatched hello reaches the store
    // before rank 0's own.
    const port = await freePort();
    const server = await StoreServer.listen('127.0.0.1', port, 2);
    const deadline = Date.now() + 10_000;
    const clients = [];
    try {
      for (const [r, world] of [[1, 3], [0, 2]] as const) {
        const c = await StoreClient.connect('127.0.0.1', port, deadline);
        clients.push(c);
        await expect(c.hello(r, world, deadline)).rejects.toThrow('world size mismatch: rank 1 was started with a world size of 3, rank 0 with 2');
      }
    } finally {
      for (const c of clients) await c.leave(Date.now() + 1000);
      server.close();
    }
  });

  test('an NCCL rank reduces the tensors of its GPU, cuda:LOCAL_RANK, as torchrun starts one process per GPU', async () => {
    const before = process.env.LOCAL_RANK;
    process.env.LOCAL_RANK = '1';
    try {
      const options = { backend: 'nccl', rank: 0, worldSize: 1, masterPort: await freePort(), timeoutMs: 10_000 } as const;
      if (backends().some((b) => b.name === 'cuda:1' && b.available)) {
        await distributed.init(options);
        expect(distributed.device()).toBe('cuda:1');
        await distributed.destroy();
      } else {
        // Here the choice shows in the refusal: the second GPU, not the first.
        await expect(distributed.init(options)).rejects.toThrow(/backend 'cuda:1' is unavailable/);
        expect(distributed.isInitialized()).toBe(false);
      }
    } finally {
      if (before === undefined) delete process.env.LOCAL_RANK;
      else process.env.LOCAL_RANK = before;
    }
  });

  test('options are checked before anything starts', async () => {
    await expect(distributed.init({ rank: 2, worldSize: 2 })).rejects.toThrow(RangeError);
    await expect(distributed.init({ backend: 'mpi' as never })).rejects.toThrow(/expected backend 'gloo' or 'nccl'/);
    await expect(distributed.init({ backend: 'gloo', device: 'cuda' })).rejects.toThrow(/expected device 'cpu' for gloo, got 'cuda'/);
    await expect(distributed.init({ backend: 'nccl', device: 'cpu' })).rejects.toThrow(/expected device 'cuda' or 'cuda:N' for nccl, got 'cpu'/);
    await expect(distributed.init({ backend: 'nccl', device: 'cuda:x' as never })).rejects.toThrow(TypeError);
    expect(distributed.device()).toBeNull();
    const t = randn([2]);
    expect(() => distributed.allReduce(t)).toThrow(/no process group: call distributed.init\(\) first/);
    t.dispose();
  });
});

// Small enough for two single-threaded ranks: ResNet-8 on 8x8 images.
const ddpModel = (seed: number) => models.cifarResNet({ depth: 8, seed, numClasses: 4 });
const STEPS = 3;
const BATCH = 8;
// A rank's training loop in the scripts below: rank r takes the r-th half of every batch of B.
const RANK_STEPS = `for (let s = 0; s < ${STEPS}; s++) {
  const x = randn([${BATCH / 2}, 3, 8, 8], { seed: 1000 + 2 * s + r });
  const labels = Array.from({ length: ${BATCH / 2} }, (_, i) => (s + i + r) % 4);
  tidy(() => ops.softmaxCrossEntropy(ddp.forward(x), labels).backward());
  opt.step();
  opt.zeroGrad();
  x.dispose();
}`;

describe('DistributedDataParallel', () => {
  test('2 ranks x batch B/2 reach the parameters of one process averaging the two halves\' gradients (per-rank BN statistics, as PyTorch DDP)', async () => {
    const out = join(dir, 'ddp-params.json');
    const file = script('ddp.mjs', `
import { distributed as d, models, nn, ops, optim, randn, tidy } from 'cudnn-resnet';
import { writeFileSync } from 'node:fs';
await d.init({ timeoutMs: 60000 });
const r = d.rank();
// Every rank starts from different weights: DDP must broadcast rank 0's.
const model = models.cifarResNet({ depth: 8, seed: 1 + 10 * r, numClasses: 4 });
const ddp = new nn.DistributedDataParallel(model, { bucketMB: 0.02 });
const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
${RANK_STEPS}
if (r === 0) writeFileSync(${JSON.stringify(out)}, JSON.stringify(await Promise.all(model.parameters().map(async (p) => Array.from(await p.data())))));
await d.destroy();
`);
    const [a, b] = await pair(file);
    expect(a.code, a.out).toBe(0);
    expect(b.code, b.out).toBe(0);
    const got = JSON.parse(readFileSync(out, 'utf8')) as number[][];

    setNumThreads(1);
    const model = ddpModel(1);
    const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
    try {
      for (let s = 0; s < STEPS; s++) {
        for (const r of [0, 1]) {
          const x = randn([BATCH / 2, 3, 8, 8], { seed: 1000 + 2 * s + r });
          const labels = Array.from({ length: BATCH / 2 }, (_, i) => (s + i + r) % 4);
          tidy(() => ops.scale(ops.softmaxCrossEntropy(model.forward(x), labels), 0.5).backward());
          x.dispose();
        }
        opt.step();
        opt.zeroGrad();
      }
      const want = await Promise.all(model.parameters().map(async (p) => Array.from(await p.data())));
      expect(got.length).toBe(want.length);
      let worst = 0;
      want.forEach((w, i) => {
        const scale = Math.max(...w.map(Math.abs), 1e-3);
        w.forEach((v, j) => (worst = Math.max(worst, Math.abs(got[i]![j]! - v) / scale)));
      });
      expect(worst).toBeLessThanOrEqual(1e-5);
    } finally {
      opt.dispose();
      model.dispose();
      setNumThreads(2);
    }
  });

  test('with SyncBatchNorm, 2 ranks x batch B/2 take the steps of one process with batch B: parameters and running statistics', async () => {
    const out = join(dir, 'syncbn-state.json');
    const file = script('syncbn.mjs', `
import { distributed as d, models, nn, ops, optim, randn, tidy } from 'cudnn-resnet';
import { writeFileSync } from 'node:fs';
await d.init({ timeoutMs: 60000 });
const r = d.rank();
const model = nn.convertSyncBatchNorm(models.cifarResNet({ depth: 8, seed: 1 + 10 * r, numClasses: 4 }));
const ddp = new nn.DistributedDataParallel(model, { bucketMB: 0.02 });
const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
${RANK_STEPS}
const state = model.stateDict();
const values = {};
for (const k of Object.keys(state)) if (state[k].dtype === 'float32') values[k] = Array.from(await state[k].data());
writeFileSync(${JSON.stringify(out)} + r, JSON.stringify(values));
await d.destroy();
`);
    const [a, b] = await pair(file);
    expect(a.code, a.out).toBe(0);
    expect(b.code, b.out).toBe(0);
    const ranks = [0, 1].map((r) => JSON.parse(readFileSync(`${out}${r}`, 'utf8')) as Record<string, number[]>);
    // Every rank holds the same state: the same parameters (DDP) and running statistics (the group's).
    expect(ranks[1]).toEqual(ranks[0]);

    setNumThreads(1);
    const model = ddpModel(1);
    const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
    try {
      for (let s = 0; s < STEPS; s++) {
        const halves = await Promise.all([0, 1].map(async (r) => {
          const t = randn([BATCH / 2, 3, 8, 8], { seed: 1000 + 2 * s + r });
          const v = await t.data();
          t.dispose();
          return v;
        }));
        const x = tensor(Float32Array.from([...halves[0]!, ...halves[1]!]), [BATCH, 3, 8, 8]);
        const labels = [0, 1].flatMap((r) => Array.from({ length: BATCH / 2 }, (_, i) => (s + i + r) % 4));
        tidy(() => ops.softmaxCrossEntropy(model.forward(x), labels).backward());
        opt.step();
        opt.zeroGrad();
        x.dispose();
      }
      const state = model.stateDict();
      let worst = 0;
      let compared = 0;
      for (const [k, t] of Object.entries(state)) {
        if (t.dtype !== 'float32') continue;
        const want = await t.data();
        const got = ranks[0]![k]!;
        expect(got, k).toHaveLength(want.length);
        const scale = Math.max(...Array.from(want, Math.abs), 1e-3);
        want.forEach((v, j) => (worst = Math.max(worst, Math.abs(got[j]! - v) / scale)));
        compared++;
      }
      expect(compared).toBe(Object.keys(ranks[0]!).length);
      console.log(`SyncBatchNorm: 2 ranks x ${BATCH / 2} vs 1 x ${BATCH}, ${STEPS} steps: worst relative difference ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-5);
    } finally {
      opt.dispose();
      model.dispose();
      setNumThreads(2);
    }
  });

  test('every training forward starts from rank 0\'s buffers (broadcastBuffers, the default); evaluation and broadcastBuffers: false keep each rank\'s', async () => {
    const file = script('buffers.mjs', `
import { distributed as d, nn, randn, tensor, tidy, noGrad } from 'cudnn-resnet';
await d.init({ timeoutMs: 60000 });
const r = d.rank();
const seen = {};
for (const broadcastBuffers of [true, false]) {
  // Momentum 0: batch norm leaves its running statistics as they are, so only the broadcast changes them.
  const bn = new nn.BatchNorm2d(3, { momentum: 0 });
  const ddp = new nn.DistributedDataParallel(new nn.Sequential(bn), { broadcastBuffers });
  bn.loadStateDict({ running_mean: tensor(Float32Array.of(r, r, r), [3]) }, { strict: false });
  const x = randn([2, 3, 4, 4], { seed: 5 });
  noGrad(() => tidy(() => ddp.eval().forward(x)));
  const afterEval = (await bn.runningMean.data())[0];
  tidy(() => ddp.train().forward(x));
  seen[broadcastBuffers] = [afterEval, (await bn.runningMean.data())[0]];
  x.dispose();
  ddp.dispose();
}
console.log('SEEN', JSON.stringify(seen));
await d.destroy();
`);
    const [a, b] = await pair(file);
    expect(a.code, a.out).toBe(0);
    expect(b.code, b.out).toBe(0);
    const seen = (e: Exit) => JSON.parse(e.out.split('SEEN ')[1]!.split('\n')[0]!) as Record<string, [number, number]>;
    expect(seen(a)).toEqual({ true: [0, 0], false: [0, 0] });
    expect(seen(b)).toEqual({ true: [1, 0], false: [1, 1] });
  });

  test('a bucket\'s all-reduce is enqueued while backward is still enqueueing ops, and noSync() accumulates without one', async () => {
    const port = await freePort();
    await distributed.init({ rank: 0, worldSize: 1, masterPort: port, timeoutMs: 10_000, backend: 'gloo' });
    expect(distributed.device()).toBe('cpu');
    const binding = bindingOf('cpu') as unknown as Record<string, (...a: unknown[]) => unknown>;
    const log: string[] = [];
    const watched = ['allReduce', 'collectiveWait', 'conv2dBackwardData', 'conv2dBackwardWeights'];
    const originals = new Map(watched.map((k) => [k, binding[k]!]));
    for (const k of watched) {
      binding[k] = (...args: unknown[]) => {
        log.push(k);
        return originals.get(k)!.apply(binding, args);
      };
    }
    const model = ddpModel(3);
    const ddp = new nn.DistributedDataParallel(model, { bucketMB: 0.01 });
    const x = randn([2, 3, 8, 8], { seed: 5 });
    try {
      tidy(() => ops.softmaxCrossEntropy(ddp.forward(x), [0, 1]).backward());
      const firstReduce = log.indexOf('allReduce');
      const lastConv = log.lastIndexOf('conv2dBackwardWeights');
      expect(firstReduce).toBeGreaterThanOrEqual(0);
      // Overlap: buckets start before the last convolution's backward is enqueued, and every
      // bucket is waited for only after it.
      expect(firstReduce).toBeLessThan(lastConv);
      expect(log.indexOf('collectiveWait')).toBeGreaterThan(lastConv);
      const buckets = log.filter((k) => k === 'allReduce').length;
      expect(buckets).toBeGreaterThan(1);

      log.length = 0;
      const g0 = await model.parameters()[0]!.grad!.data();
      ddp.noSync(() => tidy(() => ops.softmaxCrossEntropy(ddp.forward(x), [0, 1]).backward()));
      expect(log.filter((k) => k === 'allReduce' || k === 'collectiveWait')).toEqual([]);
      const g1 = await model.parameters()[0]!.grad!.data();
      g1.forEach((v, i) => expect(v).toBeCloseTo(2 * g0[i]!, 4));
      const p = await profile(() => tidy(() => ops.softmaxCrossEntropy(ddp.forward(x), [0, 1]).backward()));
      expect(p.ops.find((o) => o.op === 'allReduce')?.calls).toBe(buckets);
      expect(p.ops.find((o) => o.op === 'collectiveWait')?.calls).toBe(buckets);
    } finally {
      for (const [k, f] of originals) binding[k] = f;
      x.dispose();
      ddp.dispose();
      await distributed.destroy();
    }
  });
});

describe('failures', () => {
  const training = (die: string) => `
import { distributed as d, models, nn, ops, optim, randn, tidy } from 'cudnn-resnet';
await d.init({ timeoutMs: Number(process.env.TIMEOUT_MS) });
const r = d.rank();
const model = models.cifarResNet({ depth: 8, seed: 1, numClasses: 4 });
const ddp = new nn.DistributedDataParallel(model);
const opt = new optim.SGD(model.parameters(), { lr: 0.05 });
for (let s = 0; s < 6; s++) {
  if (r === 1 && s === 3) { ${die} }
  const x = randn([4, 3, 8, 8], { seed: s + 10 * r });
  const loss = tidy(() => { const l = ops.softmaxCrossEntropy(ddp.forward(x), [0, 1, 2, 3]); l.backward(); return l; });
  opt.step(); opt.zeroGrad();
  try { await loss.item(); } catch (e) { console.log('FAILED', e.code, e.message); process.exit(4); }
}
await d.destroy();
`;

  test('a rank killed mid-training makes the other fail, naming the rank and the collective', async () => {
    const file = script('killed.mjs', training(`process.kill(process.pid, 'SIGKILL');`));
    const [a, b] = await pair(file, () => ({ TIMEOUT_MS: '30000' }));
    expect(b.signal).toBe('SIGKILL');
    expect(a.code, a.out).toBe(4);
    // The collective that fails is the step's buffer broadcast or a gradient bucket's all-reduce.
    expect(a.out).toMatch(/FAILED ERR_DIST_(PEER_LOST|ABORTED) .*(allReduce|broadcast) #\d+.*rank 1/);
  });

  test('a rank that hangs makes the other fail after timeoutMs, naming the rank and the collective; launch then stops the hung one', async () => {
    const file = script('hung.mjs', training(`await new Promise(() => setInterval(() => {}, 1000));`));
    const port = String(await freePort());
    const e = await run([bin, 'launch', '--nproc', '2', '--master-port', port, file], { TIMEOUT_MS: '2000' });
    expect(e.code, e.out).toBe(1);
    expect(e.out).toMatch(/FAILED ERR_DIST_TIMEOUT (allReduce|broadcast) #\d+.* timed out on rank 0 after 2000 ms: rank 1 did not take part/);
    expect(e.out).toContain('rank 0 (local rank 0) exited with code 4; stopping the other ranks');
  });

  test('launch stops the other ranks when one dies and exits non-zero naming it', async () => {
    const file = script('launch-dies.mjs', training(`process.exit(9);`));
    const port = String(await freePort());
    const e = await run([bin, 'launch', '--nproc', '2', '--master-port', port, file], { TIMEOUT_MS: '30000' });
    expect(e.code).toBe(1);
    expect(e.out).toContain('rank 1 (local rank 1) exited with code 9');
  });
});

describe('launcher and CLI', () => {
  const trainArgs = (out: string) => ['--epochs', '1', '--limit', '256', '--batch', '32', '--depth', '8', '--threads', '1', '--out', out];

  test('launch --nproc 2 runs a script as ranks 0 and 1 of one job', async () => {
    const file = script('whoami.mjs', `
import { distributed as d, tensor } from 'cudnn-resnet';
await d.init({ timeoutMs: 30000 });
const sum = await d.allReduce(tensor(Float32Array.of(d.rank() + 1), [1])).data();
console.log('rank', d.rank(), 'of', d.worldSize(), 'local', process.env.LOCAL_RANK, 'sum', sum[0]);
await d.destroy();
`);
    const port = String(await freePort());
    const e = await run([bin, 'launch', '--nproc', '2', '--master-port', port, file], {});
    expect(e.code, e.out).toBe(0);
    expect(e.out).toContain('rank 0 of 2 local 0 sum 3');
    expect(e.out).toContain('rank 1 of 2 local 1 sum 3');
  });

  test('two "machines" (two launchers, --nnodes 2) train together with train --nproc 1; rank 0 writes the files', async () => {
    const out = join(dir, 'two-nodes');
    const port = String(await freePort());
    const node = (r: number) => run([bin, 'train', '--nproc', '1', '--nnodes', '2', '--node-rank', String(r), '--master-addr', '127.0.0.1',
      '--master-port', port, ...trainArgs(out)], {});
    const [a, b] = await Promise.all([node(0), node(1)]);
    expect(a.code, a.out).toBe(0);
    expect(b.code, b.out).toBe(0);
    expect(a.out).toContain('in each of 2 processes');
    expect(a.out).toMatch(/test accuracy: [\d.]+%/);
    expect(b.out).not.toContain('test accuracy');
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(metrics).toHaveLength(1);
    // Both shards' images count: 256 training images per epoch across the two ranks.
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    const resumed = await run([bin, 'train', '--resume', ...trainArgs(out)], {});
    expect(resumed.code).toBe(1);
    expect(resumed.out).toContain('was written by a run of 2 process(es); resume it with the same number (--nproc), not 1');
  });
});

test('an int32 tensor is refused before any collective', () => {
  const t = tensor(Int32Array.of(1), [1]);
  expect(() => distributed.allGather(t as never)).toThrow(TypeError);
  t.dispose();
});
