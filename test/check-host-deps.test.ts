/**
 * The host-dependency guard (scripts/check-host-deps.ts): its parsers and the Depends closure on
 * small inputs, then the whole check on a hand-made build folder: a header of a set-up package
 * passes, a file no package owns fails, and the failure names it.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { dependsClosure, main, parseCmakeCache, parseDepfile, parseNinjaDeps, parseStatus } from '../scripts/check-host-deps.js';

describe('parsers', () => {
  test('a depfile: targets dropped, continuations joined, escaped spaces kept', () => {
    const text = 'CMakeFiles/x.dir/a.cc.o: ../native/a.cc /usr/include/stdio.h \\\n  /opt/my\\ lib/b.h \\\n /usr/include/c++/12/vector\n';
    expect(parseDepfile(text)).toEqual(['../native/a.cc', '/usr/include/stdio.h', '/opt/my lib/b.h', '/usr/include/c++/12/vector']);
  });

  test('ninja -t deps: the indented lines', () => {
    const text = 'a.o: #deps 2, deps mtime 1 (VALID)\n    ../a.cc\n    /usr/include/stdio.h\n\nb.o: #deps 1, deps mtime 1 (VALID)\n    /usr/include/math.h\n';
    expect(parseNinjaDeps(text)).toEqual(['../a.cc', '/usr/include/stdio.h', '/usr/include/math.h']);
  });

  test('CMakeCache.txt: typed entries, comments skipped', () => {
    const cache = parseCmakeCache('// help\n# comment\nDNNL_LIBRARY:FILEPATH=/usr/lib/libdnnl.so\nCMAKE_GENERATOR:INTERNAL=Unix Makefiles\n');
    expect([...cache]).toEqual([
      ['DNNL_LIBRARY', { type: 'FILEPATH', value: '/usr/lib/libdnnl.so' }],
      ['CMAKE_GENERATOR', { type: 'INTERNAL', value: 'Unix Makefiles' }],
    ]);
  });
});

describe('the Depends closure', () => {
  // name, status, essential, priority, provides, pre-depends, depends (dpkg-query -W's fields).
  const status = parseStatus(
    [
      'libdnnl-dev\tii \tno\toptional\t\t\tlibdnnl2 (= 2.6.3-1)',
      'libdnnl2\tii \tno\toptional\t\t\tlibc6 (>= 2.34), ocl-icd-libopencl1 | libopencl1, libgomp1:amd64',
      'ocl-icd-libopencl1\tii \tno\toptional\tlibopencl1, libopencl-1.2-1\t\tlibc6',
      'libc6\tii \tno\toptional\t\tlibgcc-s1\t',
      'libgcc-s1\tii \tno\toptional\t\t\tlibc6',
      'libgomp1\tii \tno\toptional\t\t\tgcc-12-base',
      'gcc-12-base\tii \tno\trequired\t\t\t',
      'ocl-icd-opencl-dev\tii \tno\toptional\t\t\tocl-icd-libopencl1, opencl-c-headers',
      'opencl-c-headers\tii \tno\toptional\t\t\t',
      'old-removed\trc \tno\toptional\t\t\t',
      'uses-virtual\tii \tno\toptional\t\t\tlibopencl-1.2-1',
    ].join('\n'),
  );

  test('follows Depends, Pre-Depends, arch qualifiers and cycles; stops there', () => {
    expect([...dependsClosure(status, ['libdnnl-dev'])].sort()).toEqual(
      ['gcc-12-base', 'libc6', 'libdnnl-dev', 'libdnnl2', 'libgcc-s1', 'libgomp1', 'ocl-icd-libopencl1'].sort(),
    );
  });

  test('a virtual package resolves to its installed provider; removed packages are not installed', () => {
    expect([...dependsClosure(status, ['uses-virtual'])].sort()).toEqual(['libc6', 'libgcc-s1', 'ocl-icd-libopencl1', 'uses-virtual']);
    expect(status.installed.has('old-removed')).toBe(false);
    expect(dependsClosure(status, ['old-removed']).size).toBe(0);
  });

  test("what libdnnl-dev only recommends is not in its closure", () => {
    expect(dependsClosure(status, ['libdnnl-dev']).has('ocl-icd-opencl-dev')).toBe(false);
    expect(dependsClosure(status, ['libdnnl-dev']).has('opencl-c-headers')).toBe(false);
  });
});

// The whole check needs dpkg and the packages of scripts/setup-debian.sh installed (CI, and the
// development machines); elsewhere it is skipped with the reason.
const setup = spawnSync('bash', ['scripts/setup-debian.sh', '--list'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
const missing = setup.filter((p) => !/^ii/.test(spawnSync('dpkg-query', ['-W', '-f', '${db:Status-Abbrev}', p], { encoding: 'utf8' }).stdout ?? ''));
const reason = spawnSync('dpkg-query', ['--version']).status !== 0 ? 'no dpkg-query here' : missing.length ? `not installed: ${missing.join(', ')}` : '';
if (reason) console.log(`[skip] check-host-deps on a build folder: ${reason}`);

describe.skipIf(reason !== '')('the check on a build folder', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  // A Makefiles build folder whose only compile read `headers`.
  function buildFolder(headers: string[]): string {
    const dir = mkdtempSync(join(tmpdir(), 'host-deps-'));
    dirs.push(dir);
    mkdirSync(join(dir, 'CMakeFiles', 'x.dir'), { recursive: true });
    writeFileSync(join(dir, 'CMakeCache.txt'), 'CMAKE_GENERATOR:INTERNAL=Unix Makefiles\n');
    writeFileSync(join(dir, 'CMakeFiles', 'Makefile.cmake'), 'set(CMAKE_MAKEFILE_DEPENDS\n  "CMakeCache.txt"\n  )\n');
    writeFileSync(join(dir, 'CMakeFiles', 'x.dir', 'a.cc.o.d'), `x.dir/a.cc.o: ${headers.join(' \\\n ')}\n`);
    return dir;
  }

  function check(dir: string): { status: number; output: string } {
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    try {
      return { status: main([dir]), output: lines.join('\n') };
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
  }

  test('a libc header (g++ depends on libc6-dev) passes', () => {
    const r = check(buildFolder(['/usr/include/stdio.h']));
    expect(r.output).toContain('libc6-dev (1)');
    expect(r.status).toBe(0);
  });

  test('a file no package owns, under no chosen prefix, fails and is named', () => {
    const dir = buildFolder(['/usr/include/stdio.h']);
    const stray = mkdtempSync(join(tmpdir(), 'host-deps-stray-'));
    dirs.push(stray);
    writeFileSync(join(stray, 'stray.h'), '');
    writeFileSync(join(dir, 'CMakeFiles', 'x.dir', 'b.cc.o.d'), `x.dir/b.cc.o: ${join(stray, 'stray.h')}\n`);
    const r = check(dir);
    expect(r.status).toBe(1);
    expect(r.output).toContain(`${join(stray, 'stray.h')} (compiler dependencies): no Debian package owns it`);
  });

  test('a folder with no compiler dependency information is an error, not a pass', () => {
    const dir = buildFolder([]);
    writeFileSync(join(dir, 'CMakeFiles', 'x.dir', 'a.cc.o.d'), '');
    expect(check(dir).status).toBe(2);
  });
});
