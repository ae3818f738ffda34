/**
 * The boundary fuzzer: calls every public function of the library, every method of its classes
 * and every function of the native addon with generated arguments, most of them wrong, and checks
 * that each call returns or throws an `Error` with a message: never a crash, a non-Error throw, a
 * hang or an unhandled rejection. Meant to run in a child process (test/fuzz.test.ts), so that a
 * native crash is an exit status and not the death of the test runner.
 *
 *   node --import tsx test/fuzz/boundary.ts [--seed N] [--calls N] [--seconds S] [--start I] [--only NAME]
 *
 * Reproducible: call i of a run with seed s is generated from (s, i) alone; `--start i --calls 1`
 * replays it. With FUZZ_TRACE_FD=3 each call is written to fd 3 before it runs (synchronously),
 * so the parent knows which call a crash happened in. The last stdout line is a JSON summary.
 *
 * This file is the runner: it builds the world (world.ts) and the targets (lib-targets.ts,
 * native-targets.ts, and target.ts's walk of the exports for the rest), makes each call,
 * judges what it did and sums up.
 * @module
 */
import { rmSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as L from '../../lib/index.js';
import type { NativeBuffer } from '../../lib/backend/binding.js';
import { type Arg, FuzzTrap, Gen, callSeed, junk } from './gen.js';
import { libTargets } from './lib-targets.js';
import { foreignTargets, nativeTargets } from './native-targets.js';
import { JUNK_RECEIVER, type Target, autoTargets, collector } from './target.js';
import { type World, makeFixtures, makeWorld } from './world.js';

/** Every target: the library's, the addon's of each usable backend, the foreign addon's. */
function buildTargets(w: World): Target[] {
  const T: Target[] = [];
  const add = collector(T);
  libTargets(w, add);
  for (const be of Object.keys(w.natives)) nativeTargets(w, (name, args, call, opts) => add(be === 'cpu' ? name : name.replace(/^binding\./, `binding(${be}).`), args, call, { ...opts, backend: be }), be);
  foreignTargets(w, add);
  return T;
}

// ---------------------------------------------------------------------------------------------
// Running calls and judging what they did.

/** Messages of errors V8 raises itself: a check the library lacks, reported apart. */
const ENGINE_MESSAGE = /^(Cannot read propert|Cannot read private member|Cannot (set|assign|create|convert|destructure|mix BigInt|use 'in')|.* is not (a function|iterable|a constructor|defined)|Invalid (typed )?array length|Maximum call stack|Reduce of empty array|Array buffer allocation failed|Do not know how to serialize a BigInt|Converting circular structure)/;

export interface Summary {
  seed: number;
  calls: number;
  seconds: number;
  targets: number;
  outcomes: Record<string, number>;
  /** Calls per target name, to see that every function was reached. */
  perTarget: Record<string, number>;
  /** Milliseconds per target, fixtures and checks included. */
  perTargetMs: Record<string, number>;
  /** Functions and methods that got only junk arguments (no schema above). */
  autoTargets: string[];
  /** Errors raised by the engine instead of the library's checks: template → count and an example call. */
  engineErrors: Record<string, { count: number; call: string }>;
  /** Calls after which tensors or native buffers stayed allocated. */
  leaks: { index: number; call: string; tensors: number; buffers: number }[];
  failures: { index: number; call: string; kind: string; detail: string }[];
  otherInstance: boolean;
  foreignInstance: boolean;
}

function template(msg: string): string {
  return msg.replace(/\d+(\.\d+)?(e[+-]?\d+)?/g, 'N').replace(/'[^']*'/g, "'…'").slice(0, 160);
}

function disposeDeep(v: unknown, w: World, depth = 0): void {
  if (v === null || typeof v !== 'object' || depth > 2) return;
  try {
    if (v instanceof L.Tensor || (w.other && v instanceof w.other.Tensor)) return (v as L.Tensor).dispose();
    if (v instanceof L.nn.Module || (w.other && v instanceof w.other.nn.Module)) return (v as L.nn.Module).dispose();
    if (v instanceof L.optim.SGD) return v.dispose();
    for (const b of Object.values(w.natives)) {
      if (v instanceof (b as unknown as { NativeBuffer: new () => object }).NativeBuffer) return b.release(v as NativeBuffer);
    }
    if (w.foreign && v instanceof (w.foreign as unknown as { NativeBuffer: new () => object }).NativeBuffer) return w.foreign.release(v as NativeBuffer);
    if (Array.isArray(v)) for (const x of v) disposeDeep(x, w, depth + 1);
    else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) disposeDeep(x, w, depth + 1);
  } catch {
    // A forged or half-made object: nothing of ours to free.
  }
}

const TIMEOUT_MS = 15_000;

function withTimeout<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new HangError()), TIMEOUT_MS); })]).finally(() => clearTimeout(timer));
}

class HangError extends Error {}

export interface RunOptions {
  seed: number;
  calls: number;
  seconds: number;
  start: number;
  only: string | null;
  trace: (line: string) => void;
}

export async function run(o: RunOptions): Promise<Summary> {
  const w = await makeWorld();
  // Relative paths among the generated arguments ('cpu', '3') are written into the temporary folder.
  const cwd = process.cwd();
  process.chdir(w.dir);
  const fx = makeFixtures(w);
  const T = buildTargets(w);
  const auto = autoTargets(w, T);
  const targets = o.only ? T.filter((t) => t.name === o.only || t.name.startsWith(`${o.only} `)) : T;
  if (targets.length === 0) throw new Error(`no target named ${o.only}`);
  const summary: Summary = {
    seed: o.seed, calls: 0, seconds: 0, targets: targets.length, outcomes: {}, perTarget: {}, perTargetMs: {}, autoTargets: auto, engineErrors: {}, leaks: [], failures: [],
    otherInstance: w.other !== null, foreignInstance: w.foreign !== null,
  };
  const late: string[] = [];
  process.on('unhandledRejection', (e) => late.push(`unhandled rejection: ${describeThrown(e)}`));
  process.on('uncaughtException', (e) => late.push(`uncaught exception: ${describeThrown(e)}`));
  const count = (k: string) => { summary.outcomes[k] = (summary.outcomes[k] ?? 0) + 1; };
  const threads = L.backends()[0]!.details.maxThreads as number;
  const t0 = performance.now();
  settle(w);
  let base = { tensors: L.memory().numTensors, buffers: nativeBuffers(w) };
  for (let i = o.start; i < o.start + o.calls; i++) {
    if (o.seconds > 0 && performance.now() - t0 > o.seconds * 1000) break;
    const g = new Gen(callSeed(o.seed, i), fx);
    const target = targets[g.int(targets.length)]!;
    g.backend = target.backend ?? 'cpu';
    let args: Arg[];
    try {
      args = generate(g, target);
    } catch (err) {
      // Making the arguments (fixtures) failed: a bug of the fuzzer, reported as one.
      summary.failures.push({ index: i, call: target.name, kind: 'generator', detail: describeThrown(err) });
      cleanup(g);
      continue;
    }
    const { valid, receiverBad } = args as Generated;
    const call = `${target.name}(${args.map((a) => a.d).join(', ')})`.slice(0, 600);
    o.trace(`${i}\t${call}\n`);
    summary.perTarget[target.name] = (summary.perTarget[target.name] ?? 0) + 1;
    summary.calls++;
    const started = performance.now();
    let outcome: string;
    try {
      const values = args.map((a) => a.v);
      let r = target.scoped ? L.tidy(() => target.call(...values)) : target.call(...values);
      if (r !== null && typeof r === 'object' && typeof (r as Promise<unknown>).then === 'function' && r instanceof Promise) r = await withTimeout(r);
      disposeDeep(r, w);
      outcome = valid ? 'ok' : 'accepted';
    } catch (err) {
      outcome = judge(err);
      if (outcome === 'engine-error' && (receiverBad || target.internal)) outcome = receiverBad ? 'receiver-error' : 'internal-error';
      if (outcome === 'hang') {
        summary.failures.push({ index: i, call, kind: 'hang', detail: `no result after ${TIMEOUT_MS} ms` });
        break;
      }
      if (outcome === 'engine-error') {
        const key = `${target.name}: ${template((err as Error).message)}`;
        const e = (summary.engineErrors[key] ??= { count: 0, call });
        e.count++;
      }
      if (outcome === 'bad-throw') summary.failures.push({ index: i, call, kind: 'bad-throw', detail: describeThrown(err) });
    }
    count(outcome);
    cleanup(g);
    // What the call queued ran by now; a failure of it is reported here, as at any sync point.
    for (const err of settle(w)) {
      const deferred = judge(err);
      count(`deferred-${deferred}`);
      if (deferred === 'bad-throw' || deferred === 'engine-error') summary.failures.push({ index: i, call, kind: `deferred ${deferred}`, detail: describeThrown(err) });
    }
    // Whatever a call made and did not hand back must be freed by now (queued work included).
    const now = { tensors: L.memory().numTensors, buffers: nativeBuffers(w) };
    const tensors = now.tensors - base.tensors;
    const buffers = now.buffers - base.buffers;
    if ((tensors > 0 || buffers > 0) && !receiverBad && !target.internal && summary.leaks.length < 50) summary.leaks.push({ index: i, call, tensors, buffers });
    summary.perTargetMs[target.name] = (summary.perTargetMs[target.name] ?? 0) + (performance.now() - started);
    base = now;
    for (const msg of late.splice(0)) summary.failures.push({ index: i, call, kind: 'async', detail: msg });
  }
  L.setNumThreads(threads);
  summary.seconds = Math.round((performance.now() - t0) / 100) / 10;
  process.chdir(cwd);
  rmSync(w.dir, { recursive: true, force: true });
  return summary;
}

/** Waits for each backend's queue (collectives in flight included); returns the failures it reported. */
function settle(w: World): unknown[] {
  const failures: unknown[] = [];
  for (const b of Object.values(w.natives)) {
    try {
      b.syncBlocking();
    } catch (err) {
      failures.push(err);
    }
  }
  return failures;
}

function nativeBuffers(w: World): number {
  let n = 0;
  for (const b of Object.values(w.natives)) n += b.memory().buffers;
  return n;
}

/** The arguments of a call, whether they were all meant valid, and whether the receiver was made wrong. */
type Generated = Arg[] & { valid: boolean; receiverBad: boolean };

/** The arguments of one call: all valid, or one or two made wrong, sometimes too few or too many. */
function generate(g: Gen, t: Target): Generated {
  const n = t.args.length;
  const validShare = t.valid ?? 0.1;
  const allValid = n === 0 || g.chance(validShare);
  const wrong = new Set<number>();
  if (!allValid) {
    wrong.add(g.int(n));
    if (n > 1 && g.chance(0.3)) wrong.add(g.int(n));
  }
  let args = t.args.map((s, i) => (wrong.has(i) ? s.bad(g) : s.ok(g)));
  let valid = allValid;
  if (!allValid && validShare > 0 && g.chance(0.1)) {
    // Too few or too many arguments.
    args = g.chance(0.5) ? args.slice(0, g.int(n + 1)) : [...args, junk(g)];
  }
  if (validShare === 0 && allValid) valid = false;
  // Trailing optional arguments left out are still valid.
  while (valid && args.length > 0 && args[args.length - 1]!.v === undefined && t.args[args.length - 1]?.optional) args.pop();
  return Object.assign(args, { valid, receiverBad: t.receiver === true && (wrong.has(0) || args.length === 0 || t.args[0] === JUNK_RECEIVER) });
}

function cleanup(g: Gen): void {
  for (const f of g.cleanup.reverse()) {
    try {
      f();
    } catch {
      // A fixture the call already freed, or broke on purpose.
    }
  }
}

function judge(err: unknown): string {
  if (err instanceof HangError) return 'hang';
  if (err instanceof FuzzTrap) return 'trap';
  if (!(err instanceof Error) || typeof err.message !== 'string' || err.message.trim() === '') return 'bad-throw';
  if (ENGINE_MESSAGE.test(err.message)) return 'engine-error';
  return 'error';
}

function describeThrown(e: unknown): string {
  if (e instanceof Error) return `${e.constructor.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 6).join('\n')}`;
  try {
    return `non-Error ${typeof e}: ${String(e)}`;
  } catch {
    return `non-Error ${typeof e}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Command line.

function parseArgs(argv: string[]): RunOptions {
  const get = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const seed = get('seed') !== undefined ? Number(get('seed')) : Math.floor(Math.random() * 2 ** 31);
  const traceFd = process.env.FUZZ_TRACE_FD ? Number(process.env.FUZZ_TRACE_FD) : null;
  return {
    seed,
    calls: Number(get('calls') ?? 10_000),
    seconds: Number(get('seconds') ?? 0),
    start: Number(get('start') ?? 0),
    only: get('only') ?? null,
    trace: traceFd === null ? () => {} : (line) => writeSync(traceFd, line),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const opts = parseArgs(process.argv.slice(2));
  console.error(`boundary fuzz: seed ${opts.seed}, calls ${opts.start}..${opts.start + opts.calls - 1}${opts.seconds ? `, at most ${opts.seconds} s` : ''}`);
  // The fuzzer listens for unhandled rejections itself, so a failure of its own must end it here.
  const summary = await run(opts).catch((err: unknown) => {
    console.error(`the fuzzer failed: ${describeThrown(err)}`);
    process.exit(2);
  });
  console.log(JSON.stringify(summary));
  for (const f of summary.failures) console.error(`FAILURE (${f.kind}) at call ${f.index} (replay: --seed ${summary.seed} --start ${f.index} --calls 1):\n  ${f.call}\n  ${f.detail}`);
  // Exit now: after a hang the call that hung is still running and would keep the process alive.
  process.exit(summary.failures.length > 0 ? 1 : 0);
}
