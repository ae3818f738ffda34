/**
 * Ending a thread or the process while native work is queued is not a crash: process.exit() and
 * uncaught exceptions end with their own status (exit() used to destroy oneDNN's JIT code under
 * the running worker: SIGSEGV in about half the runs), and worker threads terminated while busy
 * with readbacks pending take nothing else down (it used to abort the process every time).
 * Each case runs in a child process, since a failure kills the process.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { defaultCase } from './helpers.js';

const root = join(import.meta.dirname, '..');
// Inside the package, so that `import 'cudnn-resnet'` resolves to this package.
const dir = mkdtempSync(join(root, 'test', '.worker-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(name: string, code: string, args: string[] = []): { status: number | null; signal: string | null; stderr: string } {
  const file = join(dir, name);
  writeFileSync(file, code);
  const r = spawnSync(process.execPath, [file, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, signal: r.signal, stderr: r.stderr };
}

// Convolutions of several kinds and batch norms, then the end, while the worker runs them.
const ending = `
import { ops, randn, ones, zeros } from 'cudnn-resnet';
const x = randn([2, 4, 9, 7], { seed: 1 });
const convs = [[[6, 4, 3, 3], { padding: 1 }], [[6, 4, 3, 3], { stride: 2, padding: [1, 0] }],
  [[4, 2, 3, 3], { dilation: 2, padding: 2, groups: 2 }], [[4, 1, 3, 3], { groups: 4, padding: 1 }], [[8, 4, 1, 1], { stride: [2, 1] }]];
const ys = convs.map(([shape, o], i) => ops.conv2d(x, randn(shape, { seed: 10 + i }), o));
const bn = { weight: ones([6]), bias: zeros([6]), runningMean: zeros([6]), runningVar: ones([6]), training: true };
for (let i = 0; i < 20; i++) ops.relu(ops.batchNorm2d(ys[0], bn));
if (process.argv[2] === 'exit') process.exit(3);
throw new Error('uncaught, with ops queued');
`;

test.skipIf(!defaultCase.available)('process.exit() and an uncaught exception with ops queued end the process with their own status', () => {
  for (let i = 0; i < 3; i++) {
    const exited = run('exit.mjs', ending, ['exit']);
    expect(exited.signal).toBeNull();
    expect(exited.status).toBe(3);
    const thrown = run('throw.mjs', ending);
    expect(thrown.signal).toBeNull();
    expect(thrown.status).toBe(1);
    expect(thrown.stderr).toContain('uncaught, with ops queued');
  }
});

test.skipIf(!defaultCase.available)('worker threads terminated while busy, with readbacks pending, take nothing else down', () => {
  const r = run('terminate.mjs', `
import { Worker } from 'node:worker_threads';
const code = \`
  const { parentPort } = require('node:worker_threads');
  import('cudnn-resnet').then(({ ops, randn }) => {
    const x = randn([8, 16, 16, 16], { seed: 1 });
    const w = randn([16, 16, 3, 3], { seed: 2 });
    for (let i = 0; i < 200; i++) ops.relu(ops.conv2d(x, w, { padding: 1 })).data().catch(() => {});
    parentPort.postMessage('busy');
  });\`;
for (let i = 0; i < 10; i++) {
  await new Promise((resolve) => {
    const worker = new Worker(code, { eval: true });
    worker.once('message', () => setTimeout(() => worker.terminate(), i % 5));
    worker.once('exit', resolve);
  });
}
console.log('10 workers terminated');
`);
  expect(r.signal).toBeNull();
  expect(r.stderr).not.toMatch(/terminate called|Assertion failed|FATAL/);
  expect(r.status).toBe(0);
});
