/**
 * `npm run bench`: training-step and inference throughput of this library next to PyTorch and
 * TensorFlow.js on the same machine, one table, with event-loop responsiveness and a breakdown
 * of where this library's training step spends its time.
 *
 *   npm run bench -- [--threads 2] [--quick] [--only LIST] [--json PATH] [--no-docs]
 *                    [--warmup N] [--reps N] [--budget-scale X] [--verbose]
 *   npm run bench -- --ops [bench/ops.ts options]     the per-op comparison with PyTorch
 *
 * Networks: CIFAR ResNet-20 (32x32x3, projection shortcuts) at batch 32 and 128, ResNet-50
 * (224x224x3) at batch 16 on the CPU and 64 on a GPU. Frameworks: this library on every
 * available backend; PyTorch eager (NCHW and channels_last) when `python3 -c 'import torch'`
 * works; TensorFlow.js with its `cpu` and `wasm` backends, and tfjs-node / tfjs-node-gpu when
 * installed. Every job (framework, network, batch, phase) runs in its own child process, one at
 * a time, under a time budget; a child killed at its budget reports the steps it finished.
 *
 * --only takes a comma-separated list of frameworks (ours, torch, tfjs, tfjs-cpu, tfjs-wasm,
 * tfjs-node, tfjs-node-gpu), networks (resnet20, resnet50) and phases (train, infer); each kind
 * given filters its kind. --quick: ResNet-20 only, 1 warm-up and 3 timed steps, half the
 * budgets. Results: bench/results/bench.json and bench/results/bench.md; a full run (no --quick,
 * no --only, no --no-docs) also replaces the generated section of docs/benchmarks.md.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Phase } from './harness.js';
import { type JobResult, type JobSpec, type Report, renderBreakdown, renderMarkdown, renderTable, summarizeJob, updateDocs } from './report.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const rawArgs = process.argv.slice(2);

if (rawArgs[0] === '--ops') {
  // The per-op comparison lives in bench/ops.ts (also `npm run bench:ops`).
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'ops.ts'), ...rawArgs.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const { values: args } = parseArgs({
  args: rawArgs,
  options: {
    threads: { type: 'string', default: '2' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    json: { type: 'string' },
    'no-docs': { type: 'boolean', default: false },
    warmup: { type: 'string' },
    reps: { type: 'string' },
    'budget-scale': { type: 'string', default: '1' },
    verbose: { type: 'boolean', default: false },
  },
});
const threads = positiveInt('threads', args.threads!);
if (args.reps !== undefined) positiveInt('reps', args.reps);
if (args.warmup !== undefined && args.warmup !== '0') positiveInt('warmup', args.warmup);
const budgetScale = Number(args['budget-scale']);
if (!(budgetScale > 0)) fail(`--budget-scale must be a positive number, got ${args['budget-scale']}`);

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(64);
}

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) fail(`--${name} must be a positive integer, got ${v}`);
  return n;
}

type Framework = 'ours' | 'torch' | 'tfjs-cpu' | 'tfjs-wasm' | 'tfjs-node' | 'tfjs-node-gpu';
type Model = 'resnet20' | 'resnet50';
const FRAMEWORKS: Framework[] = ['ours', 'torch', 'tfjs-cpu', 'tfjs-wasm', 'tfjs-node', 'tfjs-node-gpu'];
const MODELS: Model[] = ['resnet20', 'resnet50'];
const PHASES: Phase[] = ['train', 'infer'];

// --only: each kind of token that appears filters its kind.
const only = (args.only ?? '').split(',').map((s) => s.trim()).filter(Boolean);
for (const t of only) {
  if (![...FRAMEWORKS, 'tfjs', ...MODELS, ...PHASES].includes(t)) {
    fail(`--only: unknown '${t}' (frameworks: ${FRAMEWORKS.join(', ')}, tfjs; networks: ${MODELS.join(', ')}; phases: ${PHASES.join(', ')})`);
  }
}
const wantFrameworks = only.filter((t) => FRAMEWORKS.includes(t as Framework) || t === 'tfjs');
const wantModels = only.filter((t) => MODELS.includes(t as Model));
const wantPhases = only.filter((t) => PHASES.includes(t as Phase));
const wanted = (f: Framework, m: Model, p: Phase) =>
  (wantFrameworks.length === 0 || wantFrameworks.includes(f) || (wantFrameworks.includes('tfjs') && f.startsWith('tfjs'))) &&
  (wantModels.length === 0 || wantModels.includes(m)) && (wantPhases.length === 0 || wantPhases.includes(p)) &&
  (!args.quick || m === 'resnet20');

// --- what is here ------------------------------------------------------------------------------

// OpenMP in this (idle) parent: one thread, so that it takes nothing from the children.
process.env.OMP_NUM_THREADS = '1';
const { backends } = await import('../lib/index.js');
const ourBackends = backends();
const require = createRequire(import.meta.url);
const versionOf = (pkg: string): string | null => {
  try {
    return (JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
};
const torchProbe = spawnSync('python3', ['-c', 'import torch; print(torch.__version__, torch.cuda.is_available())'], { encoding: 'utf8' });
const torchVersion = torchProbe.status === 0 ? torchProbe.stdout.trim().split(' ')[0]! : null;
const torchCuda = torchProbe.status === 0 && torchProbe.stdout.trim().endsWith('True');
const torchReason = torchProbe.error
  ? `python3 not found (${torchProbe.error.message})`
  : `python3 -c 'import torch' failed: ${(torchProbe.stderr || '').trim().split('\n').at(-1) ?? 'unknown error'}`;

const notes: string[] = [];
for (const b of ourBackends) if (!b.available) notes.push(`cudnn-resnet ${b.name}: unavailable (${b.reason})`);
if (!torchVersion) notes.push(`PyTorch: skipped, ${torchReason}`);
const tfjsInstalled: Record<string, boolean> = {};
for (const f of ['tfjs-cpu', 'tfjs-wasm', 'tfjs-node', 'tfjs-node-gpu'] as const) {
  const pkg = f === 'tfjs-cpu' ? '@tensorflow/tfjs' : f === 'tfjs-wasm' ? '@tensorflow/tfjs-backend-wasm' : `@tensorflow/${f}`;
  tfjsInstalled[f] = versionOf(pkg) !== null;
  if (!tfjsInstalled[f]) {
    notes.push(`${f}: not installed (${f.startsWith('tfjs-node') ? `optional; \`npm install ${pkg}\` to include it` : 'a devDependency: run npm ci'})`);
  }
}

// --- the jobs ----------------------------------------------------------------------------------

interface Job extends JobSpec {
  command: string[];
}

const quickScale = args.quick ? 0.5 : 1;
function loopCounts(model: Model): { warmup: number; reps: number } {
  return {
    warmup: Number(args.warmup ?? (args.quick ? 1 : model === 'resnet50' ? 2 : 3)),
    reps: Number(args.reps ?? (args.quick ? 3 : model === 'resnet50' ? 5 : 10)),
  };
}

/** Seconds a job may take once its network is built. tfjs `cpu` is hopeless at these sizes:
 * it gets a short budget and reports what it managed. */
function budgetFor(framework: Framework, model: Model, phase: Phase): number {
  let s: number;
  if (framework === 'tfjs-cpu') s = 15;
  else if (model === 'resnet20') s = 15;
  else s = phase === 'train' ? 50 : 25;
  return s * budgetScale * quickScale;
}

const jobs: Job[] = [];
const node = (script: string, rest: string[]) => [process.execPath, '--import', 'tsx', join(here, script), ...rest];
const devices: { device: 'cpu' | 'cuda'; configs: [Model, number][] }[] = [
  { device: 'cpu', configs: [['resnet20', 32], ['resnet20', 128], ['resnet50', 16]] },
];
if (ourBackends.find((b) => b.name === 'cuda')?.available) {
  devices.push({ device: 'cuda', configs: [['resnet20', 32], ['resnet20', 128], ['resnet50', 64]] });
}
for (const { device, configs } of devices) {
  for (const [model, batch] of configs) {
    for (const phase of PHASES) {
      const { warmup, reps } = loopCounts(model);
      const add = (framework: Framework, variant: string, command: (budget: number) => string[]) => {
        if (!wanted(framework, model, phase)) return;
        const budgetS = budgetFor(framework, model, phase);
        const profileS = framework === 'ours' && phase === 'train' ? budgetS * 0.4 : 0;
        jobs.push({ key: `${device}/${model}/${batch}/${variant}/${phase}`, framework, variant, device, model, batch, phase, budgetS, profileS, reps, command: command(budgetS) });
      };
      const common = (budget: number) => ['--model', model, '--batch', String(batch), '--phase', phase, '--warmup', String(warmup),
        '--reps', String(reps), '--budget', String(Math.round(budget * 10) / 10), '--threads', String(threads)];
      add('ours', `ours-${device}`, (b) => node('peer.ts', ['--framework', 'ours', '--backend', device, ...common(b),
        ...(phase === 'train' ? ['--profile-steps', '3', '--profile-budget', String(Math.round(b * 4) / 10)] : [])]));
      if (torchVersion && (device === 'cpu' || torchCuda)) {
        for (const cl of [false, true]) {
          add('torch', cl ? 'torch-channels-last' : 'torch-nchw', (b) => ['python3', join(here, 'peer_torch.py'), '--device', device, ...common(b), ...(cl ? ['--channels-last'] : [])]);
        }
      }
      const tfjsHere: Framework[] = device === 'cpu' ? ['tfjs-cpu', 'tfjs-wasm', 'tfjs-node'] : ['tfjs-node-gpu'];
      for (const f of tfjsHere) if (tfjsInstalled[f]) add(f, f, (b) => node('peer.ts', ['--framework', f, ...common(b)]));
    }
  }
}
if (jobs.length === 0) fail('nothing to run (check --only)');

// --- running them ------------------------------------------------------------------------------

interface Message { type: string; [k: string]: unknown }

/** Seconds a child may take to load its framework and build the network before its budget starts. */
const STARTUP_S = 90;

function runJob(job: Job): Promise<JobResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(job.command[0]!, job.command.slice(1), {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, BENCH_PROTOCOL_FD: '3', OMP_NUM_THREADS: String(threads), PYTHONUNBUFFERED: '1' },
    });
    const messages: Message[] = [];
    let lastMessageAt = started;
    let budgetStart: number | null = null;
    let killedAt: number | null = null;
    let log = '';
    const keepLog = (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-4000);
      if (args.verbose) process.stderr.write(chunk);
    };
    child.stdout!.on('data', keepLog);
    child.stderr!.on('data', keepLog);
    let pending = '';
    const kill = () => {
      if (child.exitCode === null && killedAt === null) {
        killedAt = performance.now();
        child.kill('SIGKILL');
      }
    };
    let timer = setTimeout(kill, STARTUP_S * 1000);
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.trim()) continue;
        const m = JSON.parse(line) as Message;
        messages.push(m);
        lastMessageAt = performance.now();
        if (m.type === 'meta') {
          // The budget counts from here: the network is built and the timed loop starts.
          budgetStart = lastMessageAt;
          clearTimeout(timer);
          timer = setTimeout(kill, (job.budgetS + job.profileS + 1) * 1000);
        } else if (m.type === 'profiling') {
          // The breakdown's steps started within the allowance: give them 3× their expected time.
          clearTimeout(timer);
          timer = setTimeout(kill, 3 * Number(m.expectMs) + 5000);
        }
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const end = performance.now();
      resolve(summarizeJob(job, messages, {
        exitCode: code,
        killedAfterS: killedAt === null ? null : (killedAt - (budgetStart ?? started)) / 1000,
        blockedAtKillS: killedAt === null ? null : (killedAt - lastMessageAt) / 1000,
        budgetUsedS: ((killedAt ?? end) - (budgetStart ?? started)) / 1000,
        wallS: (end - started) / 1000,
        log,
      }));
    });
  });
}

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown CPU',
  logicalCores: cpus().length,
  threads,
  loadAverageBefore: loadavg()[0]!,
  loadAverageAfter: 0,
};
const cpuInfo = ourBackends.find((b) => b.name === 'cpu');
const versions: Record<string, string> = {
  node: process.version,
  ...(cpuInfo?.available ? { oneDNN: `${cpuInfo.versions.onednn} (${String(cpuInfo.details.isa)})` } : {}),
  ...Object.fromEntries(Object.entries(ourBackends.find((b) => b.name === 'cuda' && b.available)?.versions ?? {}).map(([k, v]) => [k, v])),
  ...(versionOf('@tensorflow/tfjs') ? { tfjs: versionOf('@tensorflow/tfjs')! } : {}),
  ...(versionOf('@tensorflow/tfjs-backend-wasm') ? { 'tfjs-backend-wasm': versionOf('@tensorflow/tfjs-backend-wasm')! } : {}),
  ...(versionOf('@tensorflow/tfjs-node') ? { 'tfjs-node': versionOf('@tensorflow/tfjs-node')! } : {}),
  ...(versionOf('@tensorflow/tfjs-node-gpu') ? { 'tfjs-node-gpu': versionOf('@tensorflow/tfjs-node-gpu')! } : {}),
  ...(torchVersion ? { torch: torchVersion } : {}),
};
const command = `npm run bench${rawArgs.length ? ` -- ${rawArgs.join(' ')}` : ''}`;
console.log(`cudnn-resnet benchmark: ${machine.cpu}, ${machine.logicalCores} logical cores, ${threads} threads; load average ${machine.loadAverageBefore.toFixed(2)}`);
console.log(Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(', '));
for (const n of notes) console.log(`  note: ${n}`);
console.log(`${jobs.length} jobs, one child process each, one at a time:`);

const t0 = performance.now();
const results: JobResult[] = [];
for (const [i, job] of jobs.entries()) {
  const load = loadavg()[0]!;
  const r = { ...(await runJob(job)), loadAverage: load };
  results.push(r);
  console.log(`  [${String(i + 1).padStart(2)}/${jobs.length}] ${job.key.padEnd(42)} ${r.summary}`);
}
machine.loadAverageAfter = loadavg()[0]!;
const totalS = (performance.now() - t0) / 1000;

const report: Report = { date: new Date().toISOString(), command, machine, versions, notes, results, totalS };
console.log(`\n${renderTable(report)}`);
for (const r of results.filter((x) => x.breakdown)) console.log(`\n${renderBreakdown(r)}`);
console.log(`\nfinished in ${(totalS / 60).toFixed(1)} min`);

const jsonPath = args.json ?? join(here, 'results', 'bench.json');
mkdirSync(dirname(jsonPath), { recursive: true });
writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
const mdPath = join(here, 'results', 'bench.md');
mkdirSync(dirname(mdPath), { recursive: true });
writeFileSync(mdPath, renderMarkdown(report));
console.log(`wrote ${relative(process.cwd(), jsonPath)} and ${relative(process.cwd(), mdPath)}`);
const fullRun = !args.quick && only.length === 0 && !args['no-docs'];
if (fullRun) {
  updateDocs(join(root, 'docs', 'benchmarks.md'), renderMarkdown(report));
  console.log('updated the generated section of docs/benchmarks.md');
}
