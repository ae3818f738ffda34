/**
 * The command line, end to end in child processes: info, argument errors, training on a small
 * dataset in the real Fashion-MNIST file format, evaluation of its checkpoint, and a run killed
 * mid-training (or stopped by its memory limit) that resumes to exactly the weights of an
 * uninterrupted run.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { backends } from '../lib/index.js';
import { cpuCase, defaultCase } from './helpers.js';

const root = join(import.meta.dirname, '..');
const bin = join(root, 'bin', 'cudnn-resnet.js');
const dir = mkdtempSync(join(tmpdir(), 'cr-cli-'));
const data = join(dir, 'fashion-mnist');
const run = promisify(execFile);
// One OpenMP thread: two CLI processes may run at once, and results must not depend on timing.
const env = { ...process.env, OMP_NUM_THREADS: '1' };

function idx(magic: number, dims: number[], body: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return gzipSync(Buffer.concat([header, body]));
}

/** Images whose class is the row of a bright bar, with noise: learnable in a few steps. */
function writeSplit(prefix: string, n: number, seed: number): void {
  const images = new Uint8Array(n * 28 * 28);
  const labels = new Uint8Array(n);
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < n; i++) {
    const label = i % 10;
    labels[i] = label;
    for (let p = 0; p < 28 * 28; p++) {
      const row = Math.floor(p / 28);
      const bar = Math.abs(row - (2 + label * 2.5)) < 1.5 ? 180 : 0;
      images[i * 784 + p] = Math.min(255, bar + Math.floor(rand() * 60));
    }
  }
  writeFileSync(join(data, `${prefix}-images-idx3-ubyte.gz`), idx(0x803, [n, 28, 28], images));
  writeFileSync(join(data, `${prefix}-labels-idx1-ubyte.gz`), idx(0x801, [n], labels));
}

beforeAll(async () => {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(data);
  writeSplit('train', 640, 1);
  writeSplit('t10k', 200, 2);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const trainArgs = (out: string, epochs: number) => ['train', '--data', data, '--epochs', String(epochs), '--batch', '64', '--lr', '0.05', '--out', out, '--seed', '3'];

describe('cudnn-resnet CLI', () => {
  test('info lists each backend, available with its versions or unavailable with the reason', async () => {
    const { stdout } = await run(process.execPath, [bin, 'info'], { env });
    for (const b of backends()) {
      expect(stdout).toMatch(new RegExp(`^${b.name}: ${b.available ? 'available' : 'unavailable'}`, 'm'));
      if (b.reason) expect(stdout).toContain(b.reason.split('\n')[0]);
    }
    if (cpuCase.available) expect(stdout).toMatch(/^cpu: available \(onednn \d/m);
  });

  test('bad arguments exit with status 2 and the usage', async () => {
    for (const args of [['train', '--epochs', 'x'], ['train', '--model', 'vgg'], ['frobnicate'], ['train', '--bogus'], ['experiment', 'nope']]) {
      const err = await run(process.execPath, [bin, ...args], { env }).then(() => null, (e: { code: number; stderr: string }) => e);
      expect(err?.code, args.join(' ')).toBe(2);
      expect(err!.stderr).toMatch(/^cudnn-resnet: /);
      expect(err!.stderr).toContain('Usage: cudnn-resnet');
    }
  });

  test('a missing dataset says how to get it', async () => {
    const err = await run(process.execPath, [bin, 'train', '--data', join(dir, 'nowhere'), '--out', join(dir, 'x')], { env })
      .then(() => null, (e: { code: number; stderr: string }) => e);
    expect(err?.code).toBe(1);
    expect(err!.stderr).toMatch(/apt-get install dataset-fashion-mnist/);
  });

});

describe.skipIf(!defaultCase.available)('cudnn-resnet CLI training', () => {
  test('train writes checkpoint, weights, metrics and curves; eval reads the checkpoint', async () => {
    const out = join(dir, 'full');
    const { stdout } = await run(process.execPath, [bin, ...trainArgs(out, 2)], { env });
    const acc = Number(/test accuracy: ([\d.]+)%/.exec(stdout)?.[1]);
    expect(acc).toBeGreaterThan(30);
    for (const f of ['checkpoint.safetensors', 'model.safetensors', 'metrics.jsonl', 'curves.svg']) expect(existsSync(join(out, f)), f).toBe(true);
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length).toBe(2);
    const ev = await run(process.execPath, [bin, 'eval', '--checkpoint', join(out, 'checkpoint.safetensors'), '--data', data], { env });
    expect(ev.stdout).toContain(`accuracy ${acc.toFixed(2)}%`);
  });

  test('a run killed after its first epoch resumes to exactly the uninterrupted weights', async () => {
    const out = join(dir, 'killed');
    const child: ChildProcess = spawn(process.execPath, [bin, ...trainArgs(out, 2)], { env, stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const checkpoint = join(out, 'checkpoint.safetensors');
    while (!existsSync(checkpoint)) await new Promise((r) => setTimeout(r, 10));
    child.kill('SIGKILL');
    await exited;
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    const { stdout } = await run(process.execPath, [bin, ...trainArgs(out, 2), '--resume'], { env });
    expect(stdout).toMatch(/resuming from .* after epoch 1/);
    const a = readFileSync(join(dir, 'full', 'model.safetensors'));
    const b = readFileSync(join(out, 'model.safetensors'));
    expect(b.equals(a)).toBe(true);
  });

  test('a run that reaches --memory-limit stops with the error, keeps its checkpoint, and resumes exactly', async () => {
    const out = join(dir, 'capped');
    await run(process.execPath, [bin, ...trainArgs(out, 1)], { env });
    const afterEpoch1 = readFileSync(join(out, 'model.safetensors'));
    const err = await run(process.execPath, [bin, ...trainArgs(out, 2), '--resume', '--memory-limit', '8MiB'], { env })
      .then(() => null, (e: { code: number; stderr: string }) => e);
    expect(err?.code).toBe(1);
    expect(err!.stderr).toMatch(/^cudnn-resnet: \w+: memory limit exceeded: \d+ bytes requested for a float32 \[/);
    expect(err!.stderr).toContain(`the checkpoint of epoch 1 is kept in ${join(out, 'checkpoint.safetensors')}: continue with --resume`);
    expect(readFileSync(join(out, 'model.safetensors')).equals(afterEpoch1)).toBe(true);
    await run(process.execPath, [bin, ...trainArgs(out, 2), '--resume'], { env });
    // The same two runs without the failed attempt between them: it changed nothing.
    const reference = join(dir, 'capped-reference');
    await run(process.execPath, [bin, ...trainArgs(reference, 1)], { env });
    await run(process.execPath, [bin, ...trainArgs(reference, 2), '--resume'], { env });
    expect(readFileSync(join(out, 'model.safetensors')).equals(readFileSync(join(reference, 'model.safetensors')))).toBe(true);
    const bad = await run(process.execPath, [bin, ...trainArgs(out, 2), '--memory-limit', 'lots'], { env }).then(() => null, (e: { code: number; stderr: string }) => e);
    expect(bad?.code).toBe(2);
    expect(bad!.stderr).toContain("--memory-limit: expected a size such as 2GiB, 512MiB or 1000000 (bytes), got 'lots'");
  });
});
