/**
 * The benchmark's bookkeeping (bench/report.ts): what a child's messages become in the table,
 * for finished, budget-limited, killed, failing and unavailable jobs. No timing is measured.
 */
import { describe, expect, test } from 'vitest';
import { type JobSpec, type RunFacts, renderTable, summarizeJob } from '../bench/report.js';

const job = (over: Partial<JobSpec> = {}): JobSpec => ({
  key: 'cpu/resnet20/32/x/train', framework: 'ours', precision: 'fp32', variant: 'ours-cpu', device: 'cpu', model: 'resnet20',
  batch: 32, phase: 'train', budgetS: 15, profileS: 0, reps: 3, ...over,
});
const run = (over: Partial<RunFacts> = {}): RunFacts => ({
  exitCode: 0, killedAfterS: null, blockedAtKillS: null, budgetUsedS: 2, wallS: 3, log: '', ...over,
});
const meta = { type: 'meta', framework: 'x', version: '1', params: 272474, threads: 2 };
const step = (ms: number, warm: boolean, eld: unknown = null) => ({ type: 'step', phase: 'train', ms, warm, eld });

describe('summarizeJob', () => {
  test('median and range of the timed steps only', () => {
    const r = summarizeJob(job(), [meta, step(1000, true), step(100, false), step(200, false, { p99Ms: 2, maxMs: 9 }), step(50, false, { p99Ms: 3, maxMs: 12 }), { type: 'done' }], run());
    expect(r.status).toBe('ok');
    expect(r.imgPerSec).toEqual({ median: 320, min: 160, max: 640 });
    expect(r.cold).toBe(false);
    expect(r.eld).toEqual({ p99Ms: 3, maxMs: 12 });
  });

  test('a synchronous framework killed before any step: an upper bound and a blocked loop', () => {
    const r = summarizeJob(job({ framework: 'tfjs-cpu', variant: 'tfjs-cpu' }), [meta], run({ exitCode: null, killedAfterS: 16, blockedAtKillS: 16, budgetUsedS: 16 }));
    expect(r.status).toBe('budget');
    expect(r.imgPerSec).toBeNull();
    expect(r.below).toBe(2);
    expect(r.eldAtLeastMs).toBe(16000);
  });

  test('only warm-up steps finished: reported as cold', () => {
    const r = summarizeJob(job({ framework: 'tfjs-cpu', variant: 'tfjs-cpu' }), [meta, step(8000, true)], run({ exitCode: null, killedAfterS: 16, blockedAtKillS: 8, budgetUsedS: 16 }));
    expect(r.cold).toBe(true);
    expect(r.imgPerSec!.median).toBe(4);
  });

  test('cannot, unavailable and failed', () => {
    expect(summarizeJob(job(), [meta, { type: 'cannot', phase: 'train', error: "Kernel 'X' not registered" }, { type: 'done' }], run())).toMatchObject({ status: 'cannot', error: "Kernel 'X' not registered" });
    expect(summarizeJob(job(), [{ type: 'unavailable', reason: 'no GPU' }, { type: 'done' }], run())).toMatchObject({ status: 'unavailable', error: 'no GPU' });
    expect(summarizeJob(job(), [meta, step(10, false)], run({ exitCode: 1, log: 'Error: boom\n' })).status).toBe('failed');
  });
});

test('the table compares every row with this library and checks the parameter counts', () => {
  const ours = summarizeJob(job({ reps: 1 }), [meta, step(100, false), { type: 'done' }], run());
  const peer = summarizeJob(job({ framework: 'torch', variant: 'torch-nchw', reps: 1 }), [{ ...meta, version: '2.13' }, step(200, false), { type: 'done' }], run());
  const slow = summarizeJob(job({ framework: 'tfjs-cpu', variant: 'tfjs-cpu' }), [{ ...meta, params: 5 }], run({ exitCode: null, killedAfterS: 16, blockedAtKillS: 16, budgetUsedS: 16 }));
  const table = renderTable({
    date: '', command: '', machine: { cpu: '', logicalCores: 2, threads: 2, loadAverageBefore: 0, loadAverageAfter: 0 },
    versions: {}, notes: [], results: [ours, peer, slow], totalS: 0,
  });
  expect(table).toContain('| 320 | 1.00× |');
  expect(table).toContain('| 160 | 2.00× |');
  expect(table).toContain('< 2.00 (0 steps in 16.0 s: killed at its budget) | > 160×');
  expect(table).toContain("2.00× PyTorch's best (NCHW)");
  expect(table).toContain('parameter counts differ');
});

test('mixed-precision rows compare with this library at their precision, and with its own fp32', () => {
  const steps = (ms: number) => [meta, step(ms, false), { type: 'done' }];
  const results = [
    summarizeJob(job({ reps: 1 }), steps(100), run()),
    summarizeJob(job({ reps: 1, precision: 'bf16', variant: 'ours-cpu-bf16' }), steps(50), run()),
    summarizeJob(job({ reps: 1, framework: 'torch', precision: 'bf16', variant: 'torch-channels-last-bf16' }), steps(80), run()),
    summarizeJob(job({ reps: 1, framework: 'torch', variant: 'torch-channels-last' }), steps(400), run()),
  ];
  const table = renderTable({
    date: '', command: '', machine: { cpu: '', logicalCores: 2, threads: 2, loadAverageBefore: 0, loadAverageAfter: 0 },
    versions: {}, notes: [], results, totalS: 0,
  });
  expect(table).toContain('**cudnn-resnet** cpu (oneDNN), bf16 mixed precision | 2 | 272,474 | 640 | 1.00× |');
  expect(table).toContain('channels_last, autocast bf16 | 2 | 272,474 | 400 | 1.60× |');
  expect(table).toContain('channels_last | 2 | 272,474 | 80.0 | 4.00× |');
  expect(table).toContain("cudnn-resnet in bf16 runs at 1.60× PyTorch's best (channels_last, autocast bf16), 2.00× its own fp32.");
  expect(table).toContain("cudnn-resnet runs at 4.00× PyTorch's best (channels_last).");
});
