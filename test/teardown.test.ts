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

function run(name: string, code: string, args: string[] = []): { status: number | null; signal: string | null; stdout: string; stderr: string } {
  const file = join(dir, name);
  writeFileSync(file, code);
  const r = spawnSync(process.execPath, [file, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
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

test('a thread terminated, and a process exiting, while blocked in a collective whose peer never comes end at once, not after the group\'s timeout', () => {
  // Two worker threads form a group of two over loopback (each thread has its own addon
  // context); rank 1 joins and then takes part in nothing. Rank 0 blocks in an all-reduce and is
  // terminated; then the main thread joins a new group with a thread that idles, blocks in a
  // barrier and exits. The group's timeout is 10 minutes: either wait running into it would fail
  // this test (spawnSync's 60 s bound), and the thread and process must end with their own status.
  const r = run('collective-blocked.mjs', `
import { Worker } from 'node:worker_threads';
import { createServer } from 'node:net';
import { distributed } from 'cudnn-resnet';
const freePort = () => new Promise((resolve) => { const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); }); });
const member = (rank, port, blocks) => new Worker(\`
  const { parentPort } = require('node:worker_threads');
  import('cudnn-resnet').then(async ({ distributed, randn }) => {
    await distributed.init({ rank: \${rank}, worldSize: 2, masterPort: \${port}, timeoutMs: 600000 });
    if (\${blocks}) distributed.allReduce(randn([1000])).data().catch(() => {});
    // Alive until terminated, however slowly the test runs (the group's connections are unref'd).
    setInterval(() => {}, 1000);
    parentPort.postMessage('in the group');
  });\`, { eval: true });
let port = await freePort();
const [a, b] = [member(0, port, true), member(1, port, false)];
await Promise.all([a, b].map((w) => new Promise((resolve) => w.once('message', resolve))));
await new Promise((resolve) => setTimeout(resolve, 200));
console.log('rank 0 terminated with code', await a.terminate());
console.log('rank 1 terminated with code', await b.terminate());
port = await freePort();
const idle = member(1, port, false);
// Listening before init: the thread may report while init is still settling here, and a message
// with no listener is gone.
const idling = new Promise((resolve) => idle.once('message', resolve));
await distributed.init({ rank: 0, worldSize: 2, masterPort: port, timeoutMs: 600000 });
await idling;
distributed.barrier().catch(() => {});
await new Promise((resolve) => setTimeout(resolve, 200));
process.exit(7);
`);
  expect(r.signal, r.stderr).toBeNull();
  expect(r.stderr).not.toMatch(/terminate called|Assertion failed|FATAL/);
  expect(r.stdout).toContain('rank 0 terminated with code 1');
  expect(r.stdout).toContain('rank 1 terminated with code 1');
  expect(r.status, r.stderr).toBe(7);
});
