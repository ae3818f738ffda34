/**
 * Both addons export the same native surface by construction (native/common/ops/registry.cc is
 * the one registration list, linked into each): this checks that it is exactly the list
 * lib/backend/binding.ts declares, and that no symbol of ours was left for the dynamic loader to
 * find (a definition in the wrong namespace links, then fails when first called).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const root = new URL('../', import.meta.url);
const require = createRequire(import.meta.url);

// The method names of the Binding interface, read from its source.
function declaredNames(): string[] {
  const source = readFileSync(new URL('lib/backend/binding.ts', root), 'utf8');
  const body = /export interface Binding \{\n([\s\S]*?)\n\}/.exec(source);
  if (!body) throw new Error('lib/backend/binding.ts: no `export interface Binding { ... }`');
  return [...body[1]!.matchAll(/^ {2}(\w+)\??\(/gm)].map((m) => m[1]!).sort();
}

// The CUDA addon's test hooks (native/cuda/host_checks.cc) run cuDNN's host-side arithmetic
// without a GPU; they are not part of the surface.
const TEST_HOOK = /^host[A-Z]/;

const addons = ['cpu', 'cuda'].map((name) => {
  const path = fileURLToPath(new URL(`build/Release/cudnn_resnet_${name}.node`, root));
  if (!existsSync(path)) return { name, path, exports: null, reason: `${path} was not built` };
  try {
    return { name, path, exports: require(path) as Record<string, unknown>, reason: '' };
  } catch (err) {
    return { name, path, exports: null, reason: `it cannot be loaded here (${(err as Error).message.split('\n')[0]})` };
  }
});

describe('native surface', () => {
  test('binding.ts declares the surface', () => {
    const names = declaredNames();
    expect(names.length).toBeGreaterThan(40);
    expect(names).toContain('conv2dForward');
    expect(names).toContain('sgdStep');
  });

  for (const a of addons) {
    if (!a.exports) console.log(`[skip] ${a.name} addon surface: ${a.reason}`);
    test.skipIf(!a.exports)(`the ${a.name} addon exports exactly the functions binding.ts declares`, () => {
      const exported = Object.keys(a.exports!).filter((k) => k !== 'NativeBuffer' && !TEST_HOOK.test(k)).sort();
      expect(exported).toEqual(declaredNames());
      for (const k of exported) expect(typeof a.exports![k], k).toBe('function');
      expect(typeof a.exports!.NativeBuffer).toBe('function');
    });

    const nm = (() => {
      try {
        execFileSync('nm', ['--version'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    })();
    test.skipIf(!existsSync(a.path) || !nm)(`the ${a.name} addon resolves every symbol of ours at link time`, () => {
      const undefinedSymbols = execFileSync('nm', ['-DC', '--undefined-only', a.path], { encoding: 'utf8' });
      expect(undefinedSymbols.split('\n').filter((l) => /\bcr::/.test(l))).toEqual([]);
    });
  }
});
