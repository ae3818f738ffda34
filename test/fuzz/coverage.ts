/**
 * Block coverage of chosen source files, read from V8 after each fuzz input through the
 * inspector (Profiler.startPreciseCoverage with block granularity): the feedback a
 * coverage-guided fuzzer keeps inputs by. Each take resets V8's counters, so a take describes
 * exactly what ran since the previous one.
 * @module
 */
import { Session } from 'node:inspector';

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}

interface ScriptCoverage {
  url: string;
  functions: { ranges: Range[] }[];
}

/** AFL's hit-count buckets: a block run 1, 2, 3, 4-7, 8-15, 16-31, 32-127 or 128+ times. */
function bucket(count: number): number {
  if (count <= 3) return count;
  if (count < 8) return 4;
  if (count < 16) return 5;
  if (count < 32) return 6;
  return count < 128 ? 7 : 8;
}

export class Coverage {
  readonly #session = new Session();
  readonly #files: RegExp;
  /** Per file, which source positions (of the code V8 runs: tsx's output) have run. */
  readonly #ran = new Map<string, Uint8Array>();

  /** Coverage of the scripts whose URL matches `files`. */
  constructor(files: RegExp) {
    this.#files = files;
    this.#session.connect();
    this.#post('Profiler.enable');
    this.#post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  #post(method: string, params?: object): unknown {
    let result: unknown;
    let error: Error | null = null;
    // The in-process session answers synchronously.
    this.#session.post(method, params ?? {}, (err, res) => {
      error = err;
      result = res;
    });
    if (error) throw error;
    return result;
  }

  /**
   * The features run since the last take: each block V8 reports (a range whose count differs
   * from its enclosing one) with the AFL bucket of its count.
   */
  take(): Set<string> {
    const { result } = this.#post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    const features = new Set<string>();
    for (const script of result) {
      if (!this.#files.test(script.url)) continue;
      const file = script.url.slice(script.url.lastIndexOf('/') + 1);
      const ranges: Range[] = [];
      for (const fn of script.functions) {
        for (const r of fn.ranges) {
          ranges.push(r);
          if (r.count > 0) features.add(`${file}:${r.startOffset}-${r.endOffset}#${bucket(r.count)}`);
        }
      }
      // Paint outer ranges before the ranges nested in them: a position ran when its innermost range did.
      ranges.sort((a, b) => a.startOffset - b.startOffset || b.endOffset - a.endOffset);
      const end = Math.max(0, ...ranges.map((r) => r.endOffset));
      const now = new Uint8Array(end);
      for (const r of ranges) now.fill(r.count > 0 ? 1 : 0, r.startOffset, r.endOffset);
      const ran = this.#ran.get(file) ?? new Uint8Array(end);
      const merged = ran.length >= end ? ran : Uint8Array.from({ length: end }, (_, i) => ran[i] ?? 0);
      for (let i = 0; i < end; i++) merged[i]! |= now[i]!;
      this.#ran.set(file, merged);
    }
    return features;
  }

  /**
   * For each file, the share of its code (characters of the JavaScript V8 runs, all functions
   * included, those no input can reach too) that has run, in percent.
   */
  report(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [file, ran] of this.#ran) out[file] = Math.round((ran.reduce((a, b) => a + b, 0) / Math.max(1, ran.length)) * 1000) / 10;
    return out;
  }

  close(): void {
    this.#post('Profiler.stopPreciseCoverage');
    this.#session.disconnect();
  }
}
