/**
 * Runs a fuzzer in a child process, so that a native crash (SIGSEGV, abort) or a hang is an exit
 * status or a timeout seen from outside, with the call it happened in: the child writes each call
 * to fd 3 before making it (see boundary.ts), and the last line read there names the culprit.
 * The child's data segment (malloc'd and other private writable memory; not V8's and wasm's
 * address-space reservations, which an address-space cap would refuse) is capped, so that a call
 * that asks for an enormous allocation gets an out-of-memory error instead of the machine's memory.
 * @module
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The last line of stdout, parsed: the fuzzer's JSON summary (null if it never got there). */
  summary: unknown;
  /** The last call the child announced on fd 3 before it ended. */
  lastCall: string | null;
  stderr: string;
}

/** Writable memory for the child: room for Node, oneDNN and the fuzzer, not for a 64 GiB tensor. */
const DATA_KB = 8 * 1024 * 1024;

export function runChild(script: string, args: string[], opts: { timeoutMs: number; env?: Record<string, string> }): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', `ulimit -d ${DATA_KB} && exec "$@"`, 'bash', process.execPath, '--import', 'tsx', script, ...args], {
      cwd: ROOT,
      env: { ...process.env, CUDNN_RESNET_POISON: '1', FUZZ_TRACE_FD: '3', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let trace = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-20_000); });
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => { trace = (trace + d.toString()).slice(-4_000); });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const lines = trace.split('\n').filter((l) => l !== '');
      const last = stdout.trim().split('\n').pop() ?? '';
      let summary: unknown = null;
      try {
        summary = JSON.parse(last);
      } catch {
        summary = null;
      }
      resolve({ code, signal, timedOut, summary, lastCall: lines.pop() ?? null, stderr });
    });
  });
}

/** What went wrong with a child: one line for the failure, the child's stderr printed beside it. */
export function describeChild(name: string, r: ChildResult, replay: string): string {
  const how = r.timedOut ? 'hung (killed after the time limit)' : r.signal ? `was killed by ${r.signal}` : `exited with status ${r.code}`;
  console.error(`${name}: stderr (end):\n${r.stderr.slice(-4000)}`);
  return `${name} ${how}. Last call started: ${r.lastCall ?? '(none)'}. Replay: ${replay}`;
}
