/**
 * What every benchmark process shares: statistics, the step-timing loop with its time budget and
 * event-loop monitor, and the line protocol by which a child process reports to `bench/index.ts`.
 *
 * Protocol: one JSON object per line on file descriptor 3 (when `BENCH_PROTOCOL_FD=3`; else
 * stdout, when run by hand), so that
 * whatever a framework prints on stdout/stderr cannot be mistaken for a result:
 *   { type: 'meta', framework, version, params, threads, notes? }
 *   { type: 'step', phase, ms, warm, eld? }        one per finished step, as soon as it finishes
 *   { type: 'cannot', phase, error }               the framework cannot do this phase
 *   { type: 'unavailable', reason }                the framework is not installed / usable here
 *   { type: 'profiling', steps, expectMs }         this library's profiled steps start
 *   { type: 'breakdown', ... }                     this library's per-component profile
 *   { type: 'done' }
 * Streaming each step means a child killed at its budget still reports what it finished.
 */
import { closeSync, writeSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

export interface Stat {
  medianMs: number;
  minMs: number;
  maxMs: number;
}

export function summarize(samples: readonly number[]): Stat {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { medianMs: median, minMs: s[0]!, maxMs: s.at(-1)! };
}

export type Phase = 'train' | 'infer';

/** Event-loop delay over the timed steps: p99 and max in ms (1 ms timer resolution included). */
export interface LoopDelay {
  p99Ms: number;
  maxMs: number;
}

// The parent opens a pipe as fd 3 and says so; run by hand, messages go to stdout.
const protocolFd = process.env.BENCH_PROTOCOL_FD === '3' ? 3 : 1;

/** Sends one protocol message to the parent. */
export function emit(message: Record<string, unknown>): void {
  writeSync(protocolFd, `${JSON.stringify(message)}\n`);
}

export function closeProtocol(): void {
  emit({ type: 'done' });
  if (protocolFd === 3) closeSync(3);
}

export interface LoopOptions {
  warmup: number;
  reps: number;
  /** The child's budget; the loop stops early when the next step would not fit in it. */
  budgetMs: number;
}

/**
 * Runs `step` `warmup` + `reps` times (each call's promise must settle when its work is done),
 * emitting a `step` message per call. Stops early, before a step that would not fit in the
 * budget (judged by the last step's time), and stops warming up once a quarter of the budget is
 * spent, so that a slow framework still gets timed steps. Between steps the loop yields to the
 * event loop for 1 ms, so that the delay monitor's timer runs after every step; the time of a
 * step does not include that pause. Returns the timed (non-warm-up) step times.
 */
export async function timeSteps(phase: Phase, step: () => Promise<void>, o: LoopOptions): Promise<number[]> {
  const start = performance.now();
  const timed: number[] = [];
  const eld = monitorEventLoopDelay({ resolution: 1 });
  let warm = 0;
  for (;;) {
    const warmingUp = warm < o.warmup && performance.now() - start < o.budgetMs / 4;
    if (!warmingUp && timed.length === 0) eld.enable();
    const t0 = performance.now();
    await step();
    const ms = performance.now() - t0;
    await new Promise((resolve) => setTimeout(resolve, 1));
    if (warmingUp) {
      warm++;
      emit({ type: 'step', phase, ms, warm: true });
    } else {
      timed.push(ms);
      const loop: LoopDelay = { p99Ms: eld.percentile(99) / 1e6, maxMs: eld.max / 1e6 };
      emit({ type: 'step', phase, ms, warm: false, eld: eld.count > 0 ? loop : null });
      if (timed.length >= o.reps) break;
    }
    if (performance.now() - start + ms > o.budgetMs * 0.9) break;
  }
  eld.disable();
  return timed;
}

/** Reads `--name value` options (the children's arguments are always given by the parent). */
export function option(args: readonly string[], name: string, fallback?: string): string {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? args[i + 1] : undefined;
  if (v !== undefined) return v;
  if (fallback === undefined) throw new Error(`missing --${name}`);
  return fallback;
}
