/**
 * The examples in examples/ run as a user runs them (node on a file inside the package, which
 * imports 'cudnn-resnet' by name), each with a budget small enough for seconds, and print what
 * they claim to show.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { defaultCase } from './helpers.js';

const root = join(import.meta.dirname, '..');
const execFileP = promisify(execFile);

/** Runs examples/`name` with `env` added; rejects (with its output) on a non-zero exit. */
async function runExample(name: string, env: Record<string, string>): Promise<{ stdout: string; stderr: string; seconds: number }> {
  const started = performance.now();
  const { stdout, stderr } = await execFileP(process.execPath, [join(root, 'examples', name)], {
    cwd: root, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000,
  });
  return { stdout, stderr, seconds: (performance.now() - started) / 1000 };
}

const numbers = (out: string, re: RegExp) => [...out.matchAll(re)].map((m) => Number(m[1]));

const emptyData = mkdtempSync(join(tmpdir(), 'no-datasets-'));
afterAll(() => rmSync(emptyData, { recursive: true, force: true }));

describe.skipIf(!defaultCase.available)('examples', () => {
  test('train-from-code trains ResNet-20 and prints the test accuracy', async () => {
    // One step of 128 images and one evaluation batch: Fashion-MNIST where installed, else synthetic.
    const { stdout, stderr } = await runExample('train-from-code.mjs', { EXAMPLE_EPOCHS: '1', EXAMPLE_LIMIT: '128' });
    const [accuracy] = numbers(stdout, /test accuracy: (\d+\.\d+)%/g);
    expect(accuracy).toBeGreaterThanOrEqual(0);
    expect(accuracy).toBeLessThanOrEqual(100);
    expect(stdout).toContain('after 1 epoch(s) on 128 images');
    expect(stderr).toMatch(/epoch 1\/1: train loss \d/);   // fit's progress goes to stderr
  });

  test('train-from-code falls back to synthetic data with a clear message', async () => {
    const { stdout } = await runExample('train-from-code.mjs', { EXAMPLE_EPOCHS: '1', EXAMPLE_LIMIT: '128', CUDNN_RESNET_DATA: emptyData });
    expect(stdout).toContain(`Fashion-MNIST not found in ${join(emptyData, 'fashion-mnist')}`);
    expect(stdout).toContain('using a synthetic data set');
    expect(stdout).toMatch(/test accuracy: \d+\.\d+%/);
  });

  test('custom-block names its parameters as PyTorch would and its loss decreases', async () => {
    const { stdout } = await runExample('custom-block.mjs', { EXAMPLE_STEPS: '6' });
    // A registered raw parameter and a child module's parameters, with dotted names.
    expect(stdout).toContain('param stages.0.proj [32, 16, 1, 1]');
    expect(stdout).toContain('param stages.0.branch.3.weight [16, 4, 3, 3]');   // grouped conv: 16/4 inputs per group
    expect(stdout).toMatch(/34 parameter tensors, 12116 values, 30 buffers/);
    const losses = numbers(stdout, /step \d+: loss (\d+\.\d+)/g);
    expect(losses.length).toBe(6);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! * 0.8);
    expect(Math.min(...losses.slice(3))).toBeLessThan(Math.min(...losses.slice(0, 3)));
    expect(stdout).toContain('live tensors at the end: 0');
  });

  test('http-inference answers /health while classify requests are in flight', async () => {
    const { stdout } = await runExample('http-inference.mjs', { EXAMPLE_REQUESTS: '6', EXAMPLE_BATCH: '4' });
    expect(stdout).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/);
    const [burstMs] = numbers(stdout, /in 6 requests in (\d+) ms/g);
    expect(stdout).toMatch(/classified 24 images in 6 requests/);
    const m = /\/health answered (\d+) times while classifying: median (\d+\.\d+) ms, max (\d+\.\d+) ms/.exec(stdout);
    expect(m).not.toBeNull();
    const [answered, median, max] = [Number(m![1]), Number(m![2]), Number(m![3])];
    expect(answered).toBeGreaterThan(0);
    // Each health check took a fraction of the time the classification took.
    expect(median).toBeLessThan(burstMs! / 2);
    expect(max).toBeLessThan(burstMs!);
    expect(stdout).toContain('a malformed body gets 400: expected a whole number of float32 3x32x32 images');
    expect(stdout.trim().split('\n').at(-1)).toBe('server closed');
  });

  test('serve-onnx exports ResNet-20 and classifies over HTTP with onnxruntime-node, agreeing with the library', async () => {
    const { stdout } = await runExample('serve-onnx.mjs', { EXAMPLE_REQUESTS: '3', EXAMPLE_BATCH: '4' });
    expect(stdout).toMatch(/exported .*resnet20\.onnx \(1\.\d\d MB\)/);
    expect(stdout).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/);
    const m = /agree on (\d+) of (\d+) images \(largest logit difference (\S+)\)/.exec(stdout);
    expect(m).not.toBeNull();
    expect([Number(m![1]), Number(m![2])]).toEqual([12, 12]);
    expect(Number(m![3])).toBeLessThan(1e-4);
    expect(stdout).toContain('a malformed body gets 400: expected a whole number of float32 3x32x32 images');
    expect(stdout.trim().split('\n').at(-1)).toBe('server closed');
  });

  test('worker-training reports every step from a worker while the main thread beats', async () => {
    const { stdout } = await runExample('worker-training.mjs', { EXAMPLE_STEPS: '6' });
    const steps = [...stdout.matchAll(/step (\d+)\/6: loss (\d+\.\d+), (\d+) img\/s/g)];
    expect(steps.map((s) => Number(s[1]))).toEqual([1, 2, 3, 4, 5, 6]);
    const losses = steps.map((s) => Number(s[2]));
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    expect(steps.every((s) => Number(s[3]) > 0)).toBe(true);
    expect(stdout).toMatch(new RegExp(`worker exited with code 0: final loss ${losses.at(-1)!.toFixed(4)}, 0 tensors left in the worker`));
    const [beats] = numbers(stdout, /heartbeats during training: (\d+)/g);
    expect(beats).toBeGreaterThan(0);
  });
});
