/**
 * The fuzzers, with the budget CI affords (docs/reliability.md, section "Fuzzing", has the long runs):
 * - the boundary fuzzer makes 30,000 generated calls across every exported function, method and
 *   native binding, most with wrong arguments, in a child process: it must exit 0 (no crash, no
 *   hang), every call must return or throw an Error with a message, no check may be left to the
 *   engine ("Cannot read properties of undefined"), and nothing may stay allocated after a call;
 * - the reader fuzzer runs a fixed number of coverage-guided inputs through each file reader
 *   (the PyTorch checkpoint loader, its ZIP reader and its unpickler among them): every input must
 *   parse consistently or be refused with an error naming the file and offset, and none may
 *   change Object.prototype.
 * Both are seeded: FUZZ_SEED=n replays another run.
 */
import { describe, expect, test } from 'vitest';
import { describeChild, runChild } from './fuzz/child.js';
import type { Summary } from './fuzz/boundary.js';
import type { ReadersResult } from './fuzz/readers.js';
import { cpuCase } from './helpers.js';

const seed = Number(process.env.FUZZ_SEED ?? 20261129);
const CALLS = 30_000;
const READER_ITERATIONS = 1500;

// The fuzzers' world is built on the CPU backend (its handles, a second instance of its addon,
// the readers' tensors); the CUDA addon's functions join in where a GPU is usable too.
describe.skipIf(!cpuCase.available)('fuzzing', () => {
  test(`boundary: ${CALLS} generated calls, no crash, every failure an Error with a message`, async () => {
    const r = await runChild('test/fuzz/boundary.ts', ['--seed', String(seed), '--calls', String(CALLS)], { timeoutMs: 100_000 });
    const index = r.lastCall?.split('\t')[0] ?? '0';
    const replay = `node --import tsx test/fuzz/boundary.ts --seed ${seed} --start ${index} --calls 1`;
    if (r.code !== 0 || r.signal !== null || r.summary === null) throw new Error(describeChild('The boundary fuzzer', r, replay));
    const s = r.summary as Summary;
    console.log(`boundary fuzz, seed ${seed}: ${s.calls} calls to ${s.targets} targets in ${s.seconds} s: ${JSON.stringify(s.outcomes)}`);
    expect(s.failures).toEqual([]);
    expect(s.calls).toBeGreaterThanOrEqual(CALLS);
    expect(s.engineErrors).toEqual({});
    expect(s.leaks).toEqual([]);
    // Every target was called, and the copies of the library and of the addon were there to mix in.
    expect(Object.keys(s.perTarget).length).toBe(s.targets);
    expect(s.otherInstance).toBe(true);
    expect(s.foreignInstance).toBe(true);
  }, 120_000);

  test(`readers: ${READER_ITERATIONS} coverage-guided inputs each for IDX, CIFAR, safetensors, ZIP, pickle and PyTorch checkpoints`, async () => {
    const r = await runChild('test/fuzz/readers.ts', ['--seed', String(seed), '--iterations', String(READER_ITERATIONS)], { timeoutMs: 150_000 });
    if (r.code !== 0 || r.signal !== null || r.summary === null) throw new Error(describeChild('The reader fuzzer', r, `node --import tsx test/fuzz/readers.ts --seed ${seed} --iterations ${READER_ITERATIONS}`));
    const s = r.summary as ReadersResult;
    for (const t of s.readers) console.log(`reader fuzz ${t.target}: ${t.executions} inputs in ${t.seconds} s, corpus ${t.corpus}, ${t.features} features`);
    console.log(`reader code run: ${Object.entries(s.coverage).map(([f, c]) => `${f} ${c}%`).join(', ')}`);
    expect(s.readers.map((t) => t.target)).toEqual(['idx', 'cifar', 'safetensors', 'zip', 'pickle', 'torch']);
    expect(s.readers.map((t) => t.failures)).toEqual(s.readers.map(() => []));
    // Coverage guidance found inputs beyond the four seeds of each reader.
    expect(s.readers.every((t) => t.executions >= READER_ITERATIONS && t.corpus > 4)).toBe(true);
  }, 170_000);
});
