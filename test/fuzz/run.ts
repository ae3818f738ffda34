/**
 * A long fuzzing run: the boundary fuzzer, then the reader fuzzer, each in a child process for
 * half of the budget. `npm run fuzz -- --seconds 600 [--seed N]`. Exits 1 on any finding; inputs
 * the reader fuzzer failed on are kept in .cache/fuzz/crashes/.
 * @module
 */
import type { Summary } from './boundary.js';
import { describeChild, runChild } from './child.js';
import type { ReadersResult } from './readers.js';

const argv = process.argv.slice(2);
const get = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const seconds = Number(get('seconds') ?? 300);
const seed = Number(get('seed') ?? Math.floor(Math.random() * 2 ** 31));
const half = Math.max(1, Math.floor(seconds / 2));
let failed = false;

console.log(`fuzz: seed ${seed}, ${half} s for the boundary fuzzer, ${half} s for the readers`);
const b = await runChild('test/fuzz/boundary.ts', ['--seed', String(seed), '--calls', '1000000000', '--seconds', String(half)], { timeoutMs: (half + 120) * 1000 });
if (b.code !== 0 || b.signal !== null || b.summary === null) {
  const index = b.lastCall?.split('\t')[0] ?? '0';
  console.log(describeChild('The boundary fuzzer', b, `node --import tsx test/fuzz/boundary.ts --seed ${seed} --start ${index} --calls 1`));
  failed = true;
}
if (b.summary !== null) {
  const s = b.summary as Summary;
  console.log(`boundary: ${s.calls} calls to ${s.targets} targets in ${s.seconds} s: ${JSON.stringify(s.outcomes)}`);
  for (const f of s.failures) console.log(`  FAILURE (${f.kind}) at call ${f.index}: ${f.call}\n    ${f.detail}`);
  for (const [k, v] of Object.entries(s.engineErrors)) console.log(`  engine error x${v.count}: ${k}\n    e.g. ${v.call}`);
  for (const l of s.leaks) console.log(`  leak: ${l.tensors} tensors, ${l.buffers} buffers after ${l.call}`);
  failed ||= s.failures.length > 0 || Object.keys(s.engineErrors).length > 0 || s.leaks.length > 0;
}

const r = await runChild('test/fuzz/readers.ts', ['--seed', String(seed), '--seconds', String(half)], { timeoutMs: (half + 120) * 1000 });
if (r.code !== 0 && r.summary === null) {
  console.log(describeChild('The reader fuzzer', r, `node --import tsx test/fuzz/readers.ts --seed ${seed} --seconds ${half}`));
  failed = true;
}
if (r.summary !== null) {
  const s = r.summary as ReadersResult;
  for (const t of s.readers) {
    console.log(`readers/${t.target}: ${t.executions} inputs in ${t.seconds} s, corpus ${t.corpus}, ${t.features} features, ${t.failures.length} failures`);
    for (const f of t.failures) console.log(`  FAILURE ${f.problem}\n    input ${f.saved}`);
    failed ||= t.failures.length > 0;
  }
  console.log(`reader code run: ${Object.entries(s.coverage).map(([f, c]) => `${f} ${c}%`).join(', ')}`);
}
process.exitCode = failed ? 1 : 0;
