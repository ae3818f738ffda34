/**
 * The README's JavaScript examples and the quick-start script run as written, against the built
 * package (imported by its own name, as a user would).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { defaultCase } from './helpers.js';

const root = join(import.meta.dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);

function runModule(code: string): string {
  // Inside the package folder so that `import 'cudnn-resnet'` resolves to this package.
  const dir = mkdtempSync(join(root, 'test', '.readme-'));
  const file = join(dir, 'example.mjs');
  writeFileSync(file, code);
  try {
    return execFileSync(process.execPath, [file], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.skipIf(!defaultCase.available)('README', () => {
  test('has examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(2);
  });

  test.each(blocks.map((code, i) => [i + 1, code] as const))('example %i runs', (_i, code) => {
    const out = runModule(code);
    expect(out.length).toBeGreaterThan(0);
  });

  test('the tour prints what its comments say', () => {
    const out = runModule(blocks[0]!);
    expect(out).toContain('[ 8, 16, 32, 32 ]');
    expect(out).toContain('131072');
    expect(out.trim().split('\n').at(-1)).toBe('0');
  });

  test('the quick start trains and cleans up', () => {
    const out = execFileSync(process.execPath, [join(root, 'examples', 'quickstart.mjs')], { cwd: root, encoding: 'utf8' });
    const losses = [...out.matchAll(/loss (\d+\.\d+)/g)].map((m) => Number(m[1]));
    expect(losses.length).toBe(4);
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    expect(out).toContain('live tensors at the end: 0');
  });
});
