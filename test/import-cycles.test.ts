/**
 * No import cycle among the compiled modules (scripts/check-import-cycles.mjs, also run by CI
 * after the typecheck): a cycle makes module evaluation order decide whether a class exists
 * when another module's top level uses it. dist/ is built by `pretest`; type-only imports are
 * erased there, so only run-time imports count. The checker itself is tested on small folders
 * with known cycles.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';

const root = join(import.meta.dirname, '..');
const script = join(root, 'scripts', 'check-import-cycles.mjs');
const tmp = mkdtempSync(join(tmpdir(), 'cr-cycles-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function check(dir: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [script, dir], { cwd: dir });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A folder of modules: path → source. */
function folder(name: string, files: Record<string, string>): string {
  const dir = join(tmp, name);
  for (const [path, source] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), source);
  }
  return dir;
}

test('dist/ has no import cycle', async () => {
  const r = await check(join(root, 'dist'));
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^check-import-cycles: no cycle among \d+ modules/);
});

describe('the checker', () => {
  test('prints every cycle as a path, through imports, re-exports and dynamic imports, and exits 1', async () => {
    const dir = folder('cyclic', {
      'a.js': "import { b } from './b.js';\nimport './d.js';\nexport const a = () => import('./sub/c.js');\n",
      'b.js': "export * from './sub/c.js';\nexport const b = 1;\n",
      'sub/c.js': "import '../a.js';\nimport { c } from './c.js';\nexport { c };\n",
      // Imports of packages and built-in modules are no edges, and neither is an import in a
      // string (it would close a -> d -> a).
      'd.js': "import { readFileSync } from 'node:fs';\nimport ts from 'typescript';\nconst s = \"import './a.js'\";\n",
    });
    const r = await check(dir);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('  '))).toEqual([
      '  a.js -> b.js -> sub/c.js -> a.js',
      '  a.js -> sub/c.js -> a.js',
      '  sub/c.js -> sub/c.js',
    ]);
    expect(r.stderr).toMatch(/^check-import-cycles: 3 import cycles in \./);
  });

  test('a graph without cycles passes, shared dependencies included', async () => {
    const dir = folder('acyclic', {
      'index.js': "export * from './x.js';\nexport * from './y.js';\n",
      'x.js': "import './z.js';\n",
      'y.js': "import './z.js';\n",
      'z.js': 'export const z = 1;\n',
    });
    const r = await check(dir);
    expect(r).toEqual({ code: 0, stdout: 'check-import-cycles: no cycle among 4 modules (4 imports) in .\n', stderr: '' });
  });

  test('an import of a file that is not there exits 2, naming it', async () => {
    const r = await check(folder('missing', { 'a.js': "import './gone.js';\n" }));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("check-import-cycles: imports of files that do not exist:\n  a.js: './gone.js'\n");
  });
});
