// The guard against hidden host dependencies (docs/building.md, "The host-dependency guard"):
// lists every file the native build read from outside the checkout, maps each to the Debian
// package that owns it, and fails, naming the package and a file that needs it, when that
// package is neither installed by scripts/setup-debian.sh (directly or as a Depends /
// Pre-Depends of what it installs: a Recommends does not count, since the script installs with
// --no-install-recommends) nor part of the base machine. CI runs it after `npm ci`.
//
// The files, from the build folder (Ninja or Makefiles, whichever cmake-js used):
//   - every header the compilers read (`ninja -t deps`, or the .d / depend.make files);
//   - every file CMake read while configuring (its modules and any package configs: the list
//     the generator re-runs CMake on);
//   - the files the CMake cache found (compilers, tools, libraries: FILEPATH entries);
//   - the libraries on the link lines, and what the built .node files load (ldd).
//
// The base machine: the packages owning node, npm, python3, g++ and make, plus every package
// that is Essential or of Priority "required" (what a minimal Debian has, debootstrap's
// minbase), with their Depends / Pre-Depends.
//
// Files no Debian package owns are accepted only under a prefix the build was pointed at or
// documents: the CUDA toolkit nvcc belongs to, cuDNN's and NCCL's folders (CUDNN_ROOT / NCCL_ROOT or
// the pip wheels of scripts/setup-cudnn.sh), oneDNN's folder when DNNL_ROOT chose one, and the base tools
// themselves (a pyenv python3; the prefix of a g++ or make that no package installed). Anything else outside dpkg fails too, so a library that
// someone `make install`ed into /usr/local is caught like a missing package. Debian packages of
// the GPU stack (cuda-*, libcudnn*, nvidia-*) are accepted and listed: the CUDA addon is
// optional and its toolkit is the user's (README, "GPU"). Where cmake-js chose Ninja
// (ninja-build), that is accepted as the build tool: without it cmake-js uses make.
//
// Usage: node --import tsx scripts/check-host-deps.ts [BUILD_DIR (default build)] [--list]
//   --list   every file with its package or prefix, and where the build read it
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const checkout = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BASE_COMMANDS = ['node', 'npm', 'python3', 'g++', 'make'];
const GPU_STACK = /^(cuda-|libcuda|libcudnn|libcublas|libnvidia-|nvidia-)/;
// Prefixes too wide to accept wholesale: a root there would accept anything installed by hand.
const TOO_WIDE = new Set(['/', '/usr', '/usr/local', '/opt', '/home', '/root', '/tmp']);

/** One package of the dpkg database: its Depends and Pre-Depends as alternatives groups. */
export interface InstalledPackage {
  groups: string[][];
  essential: boolean;
  priority: string;
}

/** The installed packages, and which installed packages provide each virtual package. */
export interface DpkgStatus {
  installed: Map<string, InstalledPackage>;
  providers: Map<string, string[]>;
}

interface Seen {
  file: string;
  why: string;
}

function run(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return r;
}

/** The file names of a Makefile-style dependency file (`target: dep dep \` lines). */
export function parseDepfile(text: string): string[] {
  const files: string[] = [];
  const tokens = text.replace(/\\\r?\n/g, ' ').match(/(?:\\ |[^\s])+/g) ?? [];
  for (const token of tokens) {
    if (token.endsWith(':')) continue;
    files.push(token.replace(/\\ /g, ' ').replace(/\$\$/g, '$'));
  }
  return files;
}

/** Dependencies per object file from `ninja -t deps` output. */
export function parseNinjaDeps(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith('    ')).map((l) => l.trim());
}

/** The value of each `NAME:TYPE=value` line of a CMakeCache.txt. */
export function parseCmakeCache(text: string): Map<string, { type: string; value: string }> {
  const cache = new Map<string, { type: string; value: string }>();
  for (const line of text.split('\n')) {
    const m = /^([^#/][^:=]*):([A-Z]+)=(.*)$/.exec(line);
    if (m) cache.set(m[1], { type: m[2], value: m[3] });
  }
  return cache;
}

/**
 * Each package's Depends and Pre-Depends as alternatives groups, and what each virtual package
 * is provided by, from `dpkg-query -W` lines `name\tstatus\tessential\tpriority\tprovides\tpre-depends\tdepends`.
 */
export function parseStatus(text: string): DpkgStatus {
  const installed = new Map<string, InstalledPackage>();
  const providers = new Map<string, string[]>();
  const names = (field: string): string[] => field.split(',').map((g) => g.trim()).filter(Boolean);
  const bare = (dep: string): string => (dep.trim().split(/[\s(]/)[0] ?? '').replace(/:[a-z0-9]+$/, '');
  for (const line of text.split('\n')) {
    const [name, status, essential, priority, provides, preDepends, depends] = line.split('\t');
    if (!name || !/^.i/.test(status)) continue;
    const groups = [...names(preDepends ?? ''), ...names(depends ?? '')].map((g) => g.split('|').map(bare));
    installed.set(name, { groups, essential: essential === 'yes', priority: priority ?? '' });
    for (const p of names(provides ?? '')) {
      const v = bare(p);
      providers.set(v, [...(providers.get(v) ?? []), name]);
    }
  }
  return { installed, providers };
}

/**
 * The installed packages `roots` need through Depends / Pre-Depends: for each alternatives
 * group, the first alternative that is installed (or provided by an installed package), which
 * is what apt would have chosen on a fresh machine.
 */
export function dependsClosure(status: DpkgStatus, roots: string[]): Set<string> {
  const seen = new Set<string>();
  const queue = roots.filter((r) => status.installed.has(r));
  for (let name = queue.pop(); name !== undefined; name = queue.pop()) {
    const pkg = status.installed.get(name);
    if (seen.has(name) || !pkg) continue;
    seen.add(name);
    for (const group of pkg.groups) {
      for (const alt of group) {
        const pick = status.installed.has(alt) ? alt : (status.providers.get(alt) ?? [])[0];
        if (pick) {
          queue.push(pick);
          break;
        }
      }
    }
  }
  return seen;
}

function isInside(file: string, dir: string): boolean {
  return file === dir || file.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

function realOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function which(cmd: string): string | null {
  const r = run('sh', ['-c', `command -v "$1"`, 'sh', cmd]);
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Every file the build in `buildDir` read, with the first place it was seen. */
function filesRead(buildDir: string, cache: Map<string, { type: string; value: string }>): Map<string, string> {
  const files = new Map<string, string>();
  const add = (p: string, why: string): void => {
    const abs = resolve(buildDir, p);
    if (!files.has(abs)) files.set(abs, why);
  };
  const generator = cache.get('CMAKE_GENERATOR')?.value ?? '';
  let headers = 0;

  if (generator === 'Ninja') {
    const ninja = cache.get('CMAKE_MAKE_PROGRAM')?.value || 'ninja';
    const r = run(ninja, ['-C', buildDir, '-t', 'deps']);
    if (r.status !== 0) throw new Error(`${ninja} -t deps failed: ${r.stderr}`);
    for (const f of parseNinjaDeps(r.stdout)) {
      add(f, 'compiler dependencies');
      headers++;
    }
    const text = readFileSync(join(buildDir, 'build.ninja'), 'utf8').replace(/\$\n\s*/g, '');
    const rerun = /^build build\.ninja: RERUN_CMAKE \|(.*)$/m.exec(text);
    for (const f of (rerun?.[1] ?? '').trim().split(/\s+/).filter(Boolean)) add(f.replace(/\$ /g, ' '), 'read by CMake');
    for (const m of text.matchAll(/^\s*LINK_LIBRARIES = (.*)$/gm)) linkTokens(m[1] ?? '', add);
  } else {
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.o.d') || e.name === 'compiler_depend.make' || e.name === 'depend.make') {
          for (const f of parseDepfile(readFileSync(p, 'utf8'))) {
            add(f, 'compiler dependencies');
            headers++;
          }
        } else if (e.name === 'link.txt') linkTokens(readFileSync(p, 'utf8'), add);
      }
    };
    walk(join(buildDir, 'CMakeFiles'));
    const makefileCmake = join(buildDir, 'CMakeFiles', 'Makefile.cmake');
    const deps = /set\(CMAKE_MAKEFILE_DEPENDS([\s\S]*?)\)/.exec(readFileSync(makefileCmake, 'utf8'));
    for (const m of (deps?.[1] ?? '').matchAll(/"([^"]+)"/g)) add(m[1] ?? '', 'read by CMake');
  }
  if (headers === 0) throw new Error(`no compiler dependency information in ${buildDir} (${generator}): build it first`);

  for (const [name, { type, value }] of cache) {
    if ((type === 'FILEPATH' || name === 'CMAKE_COMMAND') && value.startsWith('/') && isFile(value)) {
      add(value, `CMake cache ${name}`);
    }
  }
  const release = join(buildDir, 'Release');
  for (const addon of existsSync(release) ? readdirSync(release).filter((f) => f.endsWith('.node')) : []) {
    const r = run('ldd', [join(buildDir, 'Release', addon)]);
    for (const m of r.stdout.matchAll(/^\s*(?:\S+ => )?(\/\S+) \(0x/gm)) add(m[1] ?? '', `loaded by ${addon}`);
  }
  return files;

  // Absolute library paths on a link line, and -lname resolved the way the compiler driver would.
  function linkTokens(line: string, addTo: (p: string, why: string) => void): void {
    const cxx = cache.get('CMAKE_CXX_COMPILER')?.value || 'c++';
    for (const t of line.split(/\s+/)) {
      if (t.startsWith('/') && isFile(t)) addTo(t, 'link line');
      else if (/^-l[\w+.-]+$/.test(t)) {
        for (const suffix of ['.so', '.a']) {
          const p = run(cxx, [`-print-file-name=lib${t.slice(2)}${suffix}`]).stdout.trim();
          if (p.startsWith('/')) {
            addTo(resolve(p), 'link line');
            break;
          }
        }
      }
    }
  }
}

/** The package owning each path (usrmerge and symlinks tried: /lib ↔ /usr/lib, realpath). */
function owners(paths: string[]): Map<string, string[] | null> {
  const toggle = (p: string): string => (p.startsWith('/usr/') ? p.slice(4) : `/usr${p}`);
  const candidates = new Map(paths.map((p) => [p, [...new Set([p, toggle(p), realOrSelf(p), toggle(realOrSelf(p))])]]));
  const all = [...new Set([...candidates.values()].flat())];
  const owner = new Map<string, string[]>();
  for (let i = 0; i < all.length; i += 2000) {
    const r = run('dpkg-query', ['-S', ...all.slice(i, i + 2000)]);
    for (const line of r.stdout.split('\n')) {
      const m = /^([^:]+(?::[a-z0-9]+)?(?:, [^:]+(?::[a-z0-9]+)?)*): (\/.*)$/.exec(line);
      if (!m?.[1] || !m[2] || line.startsWith('diversion')) continue;
      owner.set(m[2], m[1].split(', ').map((n) => n.replace(/:[a-z0-9]+$/, '')));
    }
  }
  return new Map(paths.map((p) => [p, (candidates.get(p) ?? []).map((c) => owner.get(c)).find(Boolean) ?? null]));
}

function setupPackages(): string[] {
  const r = run('bash', [join(checkout, 'scripts', 'setup-debian.sh'), '--list']);
  if (r.status !== 0) throw new Error(`scripts/setup-debian.sh --list failed: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean);
}

/** Prefixes outside dpkg the build may read from, each with why. */
function acceptedPrefixes(
  cache: Map<string, { type: string; value: string }>,
  buildDir: string,
): { prefixes: { dir: string; label: string }[]; files: Map<string, string> } {
  const prefixes: { dir: string; label: string }[] = [];
  const files = new Map<string, string>();
  const addPrefix = (dir: string | null | undefined, label: string): void => {
    if (!dir) return;
    const real = realOrSelf(dir);
    if (!TOO_WIDE.has(real) && existsSync(real)) prefixes.push({ dir: real, label });
  };
  const value = (name: string): string | undefined => cache.get(name)?.value;
  let toolkit: string | undefined;
  const cudaCompilerFile = readdirSync(join(buildDir, 'CMakeFiles'))
    .map((d) => join(buildDir, 'CMakeFiles', d, 'CMakeCUDACompiler.cmake'))
    .find(isFile);
  if (cudaCompilerFile) {
    toolkit = /set\(CMAKE_CUDA_COMPILER_TOOLKIT_ROOT "([^"]+)"\)/.exec(readFileSync(cudaCompilerFile, 'utf8'))?.[1];
  }
  const bin = value('CUDAToolkit_BIN_DIR');
  addPrefix(toolkit ?? (bin && dirname(bin)), 'the CUDA toolkit (README, "GPU")');
  for (const name of ['CMAKE_CUDA_COMPILER', 'CUDAToolkit_NVCC_EXECUTABLE', 'CR_NVCC']) {
    const nvcc = value(name);
    if (nvcc) files.set(nvcc, "the CUDA toolkit's nvcc");
  }
  const cudnn = value('CUDNN_INCLUDE_DIR');
  if (cudnn) addPrefix(dirname(cudnn), 'cuDNN (CUDNN_ROOT or the pip wheel of scripts/setup-cudnn.sh)');
  const nccl = value('NCCL_INCLUDE_DIR');
  if (nccl) addPrefix(dirname(nccl), 'NCCL (NCCL_ROOT or the pip wheel of scripts/setup-cudnn.sh)');
  const dnnl = value('DNNL_INCLUDE_DIR');
  if (dnnl) addPrefix(dirname(dnnl), 'oneDNN (DNNL_ROOT)');
  // The build runs node and python3 (to find the cuDNN wheel) but reads nothing of their
  // prefixes, where pip or npm may have put anything; a compiler reads its own prefix.
  for (const cmd of BASE_COMMANDS) {
    const path = which(cmd);
    if (!path) continue;
    files.set(path, `the base machine's ${cmd}`);
    if (cmd === 'g++' || cmd === 'make') addPrefix(dirname(dirname(realOrSelf(path))), `the base machine's ${cmd}`);
  }
  return { prefixes, files };
}

/**
 * Runs the check on the build folder named in `argv` (default build/); returns the exit status:
 * 0 passed, 1 a hidden dependency, 2 the check could not run.
 */
export function main(argv: string[]): number {
  try {
    return check(argv);
  } catch (err) {
    console.error(`check-host-deps: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
}

function check(argv: string[]): number {
  const list = argv.includes('--list');
  const buildDir = resolve(argv.find((a) => !a.startsWith('--')) ?? join(checkout, 'build'));
  if (!existsSync(join(buildDir, 'CMakeCache.txt'))) throw new Error(`${buildDir}/CMakeCache.txt not found: build first (npm ci)`);
  if (!which('dpkg-query')) throw new Error('dpkg-query not found: this check runs on Debian and Ubuntu');
  const cache = parseCmakeCache(readFileSync(join(buildDir, 'CMakeCache.txt'), 'utf8'));

  const outside = [...filesRead(buildDir, cache)].filter(([f]) => !isInside(f, checkout) && !isInside(f, buildDir));
  const status = parseStatus(
    run('dpkg-query', ['-W', '-f', '${Package}\t${db:Status-Abbrev}\t${Essential}\t${Priority}\t${Provides}\t${Pre-Depends}\t${Depends}\n']).stdout,
  );
  const setup = setupPackages();
  const notInstalled = setup.filter((p) => !status.installed.has(p));
  if (notInstalled.length) throw new Error(`not installed: ${notInstalled.join(', ')}; run scripts/setup-debian.sh first`);
  const fromSetup = dependsClosure(status, setup);

  const { prefixes, files: acceptedFiles } = acceptedPrefixes(cache, buildDir);
  const baseRoots = [...status.installed].filter(([, p]) => p.essential || p.priority === 'required').map(([n]) => n);
  const ownerOf = owners([...outside.map(([f]) => f), ...acceptedFiles.keys()]);
  for (const f of acceptedFiles.keys()) baseRoots.push(...(ownerOf.get(f) ?? []));
  const fromBase = dependsClosure(status, baseRoots);

  const groups = new Map<string, Map<string, Seen[]>>(); // verdict → package or prefix → files
  const note = (verdict: string, label: string, file: string, why: string): void => {
    const g = groups.get(verdict) ?? new Map<string, Seen[]>();
    groups.set(verdict, g);
    g.set(label, [...(g.get(label) ?? []), { file, why }]);
  };
  const generator = cache.get('CMAKE_GENERATOR')?.value;
  for (const [file, why] of outside) {
    const pkgs = ownerOf.get(file);
    if (pkgs) {
      const pkg = pkgs.find((p) => fromSetup.has(p)) ?? pkgs.find((p) => fromBase.has(p)) ?? pkgs[0] ?? '';
      if (fromSetup.has(pkg)) note('setup', pkg, file, why);
      else if (fromBase.has(pkg)) note('base', pkg, file, why);
      else if (GPU_STACK.test(pkg)) note('gpu', pkg, file, why);
      else if (pkg === 'ninja-build' && generator === 'Ninja' && why === 'CMake cache CMAKE_MAKE_PROGRAM') note('tool', pkg, file, why);
      else note('missing', pkg, file, why);
      continue;
    }
    const real = realOrSelf(file);
    const prefix = prefixes.find((p) => isInside(real, p.dir));
    const label = acceptedFiles.get(file) ?? prefix?.label;
    if (label) note('prefix', `${label}: ${acceptedFiles.has(file) ? file : prefix?.dir}`, file, why);
    else note('unowned', file, file, why);
  }

  const counts = (verdict: string): string =>
    [...(groups.get(verdict) ?? [])].map(([label, fs]) => `${label} (${fs.length})`).join(', ') || 'none';
  console.log(`check-host-deps: ${outside.length} files read from outside the checkout by the build in ${buildDir}`);
  console.log(`  from scripts/setup-debian.sh's packages and their Depends: ${counts('setup')}`);
  console.log(`  from the base machine (${BASE_COMMANDS.join(', ')}, Essential and required packages): ${counts('base')}`);
  if (groups.has('tool')) console.log(`  the build tool cmake-js chose (it uses make without it): ${counts('tool')}`);
  if (groups.has('gpu')) console.log(`  the GPU stack's Debian packages (optional CUDA addon): ${counts('gpu')}`);
  if (groups.has('prefix')) console.log(`  outside dpkg, under a prefix the build was pointed at: ${counts('prefix')}`);
  if (list) {
    for (const [verdict, labels] of groups) {
      for (const [label, fs] of labels) for (const { file, why } of fs) console.log(`    ${verdict}\t${label}\t${file}\t(${why})`);
    }
  }

  const failures: string[] = [];
  for (const [pkg, [first, ...more]] of groups.get('missing') ?? []) {
    failures.push(`${pkg}: neither scripts/setup-debian.sh (directly or as a Depends) nor the base machine installs it; ` +
      `the build read ${first?.file} (${first?.why})${more.length ? ` and ${more.length} more of its files` : ''}`);
  }
  for (const [file, [first]] of groups.get('unowned') ?? []) {
    failures.push(`${file} (${first?.why}): no Debian package owns it and it is under no prefix the build was pointed at`);
  }
  if (failures.length) {
    console.error(`check-host-deps: FAILED: the build depends on what a fresh machine would not have:\n  ${failures.join('\n  ')}`);
    console.error('  Add the package to scripts/setup-debian.sh, or keep the build from reading it (docs/building.md).');
    return 1;
  }
  console.log('check-host-deps: passed');
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.exitCode = main(process.argv.slice(2));
