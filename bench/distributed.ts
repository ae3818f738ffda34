/**
 * Data-parallel measurements on one machine (docs/benchmarks.md, "Distributed"):
 *
 * 1. Gloo's all-reduce on loopback, 2 ranks, this library next to PyTorch's
 *    `dist.all_reduce` (gloo backend) when `python3 -c 'import torch'` works: float32 buffers of
 *    1 to 100 MiB, `reps` all-reduces in flight per round, the first round (cold: fresh buffers,
 *    whose first touch page-faults) reported apart from the median of the warm rounds.
 * 2. Scaling of CIFAR ResNet-20 training (batch 128 in all): 1 process with 2 threads against 2
 *    processes (DDP) with 1 thread and batch 64 each, and 1 process with 1 thread for reference.
 *
 * The configurations are interleaved (A, B, A, B, ...) so that a shared, loaded machine changes
 * under all of them alike, and each ratio is the median of the ratios within a round (the two
 * sides measured back to back), not a ratio of medians; the load average is printed with every
 * round. Every rank is a child process with OMP_NUM_THREADS set to its thread count (PyTorch's
 * ranks also call torch.set_num_threads); a rank's results are the last line of its output.
 *
 *   node --import tsx bench/distributed.ts [--rounds 2] [--steps 8] [--only allreduce|scaling] [--json PATH]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const SIZES_MIB = [1, 4, 25, 100];
const BATCH = 128;

interface AllReduceResult {
  mib: number;
  coldMs: number;
  warmMs: number;
}

interface StepResult {
  imagesPerSecond: number;
  stepMs: number;
}

// ---------------------------------------------------------------------------------------------
// Ranks (run in the child processes).

/** This library's all-reduce: `reps` in flight per round, timed until the last has run. */
async function allReduceRank(reps: number, rounds: number): Promise<AllReduceResult[]> {
  const { distributed, randn, sync } = await import('../lib/index.js');
  await distributed.init({ timeoutMs: 600_000 });
  const out: AllReduceResult[] = [];
  for (const mib of SIZES_MIB) {
    const x = randn([mib * 2 ** 18], { seed: 1 });
    await sync();
    const times: number[] = [];
    for (let r = 0; r < rounds + 1; r++) {
      await distributed.barrier();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) distributed.allReduce(x).dispose();
      await sync();
      times.push((performance.now() - t0) / reps);
    }
    out.push({ mib, coldMs: times[0]!, warmMs: median(times.slice(1)) });
    x.dispose();
  }
  await distributed.destroy();
  return out;
}

/** Training steps of ResNet-20 on random images: `batch` per process, DDP in a group. */
async function trainRank(batch: number, steps: number): Promise<StepResult> {
  const lib = await import('../lib/index.js');
  const { distributed, models, nn, ops, optim, randn, tidy } = lib;
  const inGroup = process.env.WORLD_SIZE !== undefined;
  if (inGroup) await distributed.init({ timeoutMs: 600_000 });
  const model = models.cifarResNet({ depth: 20, seed: 1 });
  const ddp = inGroup ? new nn.DistributedDataParallel(model) : null;
  const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
  const x = randn([batch, 3, 32, 32], { seed: 2 + distributed.rank() });
  const labels = Array.from({ length: batch }, (_, i) => (i * 7) % 10);
  const times: number[] = [];
  for (let s = 0; s < steps + 2; s++) {
    const t0 = performance.now();
    const loss = tidy(() => {
      const l = ops.softmaxCrossEntropy((ddp ?? model).forward(x), labels);
      l.backward();
      return l;
    });
    opt.step();
    opt.zeroGrad();
    await loss.item();
    loss.dispose();
    if (s >= 2) times.push(performance.now() - t0);
  }
  const stepMs = median(times);
  const worldSize = distributed.worldSize();
  for (const t of [x]) t.dispose();
  ddp?.dispose();
  opt.dispose();
  model.dispose();
  if (inGroup) await distributed.destroy();
  return { stepMs, imagesPerSecond: (batch * worldSize) / (stepMs / 1000) };
}

// ---------------------------------------------------------------------------------------------
// The driver.

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Runs `command` as `ranks` processes (or one without a group); resolves to rank 0's last line, parsed. */
async function job<T>(command: string[], ranks: number | null, threads: number): Promise<T> {
  const port = String(await freePort());
  const runs = Array.from({ length: ranks ?? 1 }, (_, rank) => new Promise<T>((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(threads) };
    if (ranks !== null) Object.assign(env, { RANK: String(rank), WORLD_SIZE: String(ranks), MASTER_ADDR: '127.0.0.1', MASTER_PORT: port });
    const child = spawn(command[0]!, command.slice(1), { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${command.join(' ')} (rank ${rank}) exited with ${code}`));
      resolve(JSON.parse(out.trim().split('\n').at(-1)!) as T);
    });
  }));
  return (await Promise.all(runs))[0]!;
}

function torchAvailable(): boolean {
  const r = spawnSync('python3', ['-c', 'import torch.distributed as d; assert d.is_gloo_available()'], { stdio: 'ignore', timeout: 60_000 });
  return r.status === 0;
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: { rounds: { type: 'string', default: '2' }, steps: { type: 'string', default: '8' }, reps: { type: 'string', default: '4' },
      only: { type: 'string' }, json: { type: 'string', default: join(here, 'results', 'distributed.json') } },
  });
  const rounds = Number(a.rounds);
  const steps = Number(a.steps);
  const reps = Number(a.reps);
  const self = [process.execPath, '--import', 'tsx', fileURLToPath(import.meta.url)];
  const load = () => loadavg().map((l) => l.toFixed(1)).join(' ');
  const report: Record<string, unknown> = { cpus: cpus().length, model: cpus()[0]?.model, started: new Date().toISOString(), loadBefore: load() };
  console.log(`${cpus().length} CPUs (${cpus()[0]?.model}), load average ${load()}`);

  if (a.only !== 'scaling') {
    const torch = torchAvailable();
    const ours: AllReduceResult[][] = [];
    const theirs: AllReduceResult[][] = [];
    for (let r = 0; r < rounds; r++) {
      ours.push(await job<AllReduceResult[]>([...self, '--rank-allreduce', String(reps), String(rounds)], 2, 1));
      if (torch) theirs.push(await job<AllReduceResult[]>(['python3', join(here, 'distributed_torch.py'), String(reps), String(rounds), SIZES_MIB.join(',')], 2, 1));
      console.log(`all-reduce round ${r + 1} of ${rounds} done, load average ${load()}`);
    }
    const rows = SIZES_MIB.map((mib, i) => {
      const warm = median(ours.map((o) => o[i]!.warmMs));
      const cold = median(ours.map((o) => o[i]!.coldMs));
      const t = torch ? median(theirs.map((o) => o[i]!.warmMs)) : null;
      // PyTorch's time over ours, per round: above 1, this library is the faster.
      const ratio = torch ? median(ours.map((o, r) => theirs[r]![i]!.warmMs / o[i]!.warmMs)) : null;
      return { mib, coldMs: cold, warmMs: warm, mibPerSecond: mib / (warm / 1000), torchMs: t, torchMibPerSecond: t === null ? null : mib / (t / 1000), ratio };
    });
    report.allReduce = rows;
    report.allReduceRounds = { ours, theirs };
    console.log(`\nall-reduce, 2 ranks x 1 thread on loopback (float32; MiB/s = buffer size / time; ${reps} in flight per round; median of ${rounds} jobs each)`);
    console.log('| size | this library, warm | cold (first round) | PyTorch gloo, warm | PyTorch time / ours (median of per-job ratios) |');
    console.log('|---|---|---|---|---|');
    for (const r of rows) {
      console.log(`| ${r.mib} MiB | ${r.warmMs.toFixed(1)} ms (${r.mibPerSecond.toFixed(0)} MiB/s) | ${r.coldMs.toFixed(1)} ms | ` +
        (r.torchMs === null ? 'n/a | n/a |' : `${r.torchMs.toFixed(1)} ms (${r.torchMibPerSecond!.toFixed(0)} MiB/s) | ${r.ratio!.toFixed(2)}x |`));
    }
  }

  if (a.only !== 'allreduce') {
    const configs = [
      { name: '1 process x 2 threads, batch 128', ranks: null, threads: 2, batch: BATCH },
      { name: '2 processes x 1 thread, batch 64 each (DDP)', ranks: 2, threads: 1, batch: BATCH / 2 },
      { name: '1 process x 1 thread, batch 128', ranks: null, threads: 1, batch: BATCH },
    ];
    const results = configs.map(() => [] as StepResult[]);
    for (let r = 0; r < rounds; r++) {
      for (const [i, c] of configs.entries()) {
        results[i]!.push(await job<StepResult>([...self, '--rank-train', String(c.batch), String(steps)], c.ranks, c.threads));
      }
      console.log(`scaling round ${r + 1} of ${rounds} done, load average ${load()}`);
    }
    const rows = configs.map((c, i) => ({
      config: c.name,
      imagesPerSecond: median(results[i]!.map((s) => s.imagesPerSecond)),
      stepMs: median(results[i]!.map((s) => s.stepMs)),
      // Against the first configuration of the same round.
      ratio: median(results[i]!.map((s, r) => s.imagesPerSecond / results[0]![r]!.imagesPerSecond)),
    }));
    report.scaling = rows;
    report.scalingRounds = results;
    console.log(`\nResNet-20 training (CIFAR shapes, batch 128 in all; median step of ${steps} after 2 warm-up, median of ${rounds} interleaved jobs)`);
    console.log('| configuration | step | images/s | vs 1 x 2 threads (median of per-round ratios) |');
    console.log('|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.config} | ${r.stepMs.toFixed(0)} ms | ${r.imagesPerSecond.toFixed(0)} | ${r.ratio.toFixed(2)}x |`);
  }
  report.loadAfter = load();
  console.log(`\nload average after: ${load()}`);
  mkdirSync(dirname(a.json!), { recursive: true });
  writeFileSync(a.json!, `${JSON.stringify(report, null, 2)}\n`);
}

const mode = process.argv[2];
if (mode === '--rank-allreduce') console.log(JSON.stringify(await allReduceRank(Number(process.argv[3]), Number(process.argv[4]))));
else if (mode === '--rank-train') console.log(JSON.stringify(await trainRank(Number(process.argv[3]), Number(process.argv[4]))));
else await main();
