// Reads the reports that AddressSanitizer and LeakSanitizer wrote into a folder
// (ASAN_OPTIONS=log_path=<dir>/asan: one file asan.<pid> per process) and the output of each run
// (output.<name>, where UBSan writes) and decides, for scripts/sanitize.sh, whether they are clean:
//
//   - every memory error (ERROR: AddressSanitizer) and every UBSan finding (runtime error) fails,
//     wherever it is: the process has aborted anyway;
//   - a LeakSanitizer failure of its own (its tracer crashing) fails: the leak check did not run;
//   - a leak fails when any frame of its allocation stack is in our code: the addon
//     (cudnn_resnet_cpu.node) or a source under native/common or native/cpu;
//   - other leaks are Node's own (V8's heap metadata, libuv, OpenSSL, the dynamic loader: node is
//     not instrumented and frees little at exit). They are counted and their allocating function
//     listed, never failed on: they cannot reach our code, since the stack has none of it.
//
// A frame is "ours" by module or source path, so this cannot be fooled by a suppression matching
// a frame deeper in the stack. LeakSanitizer's suppressions (test/sanitize/lsan.supp) cover only
// Node-API's own allocations that Node frees by garbage collection or never at exit; the number
// each one matched is printed.
//
//   node test/sanitize/report.mjs <log dir>     exit status 0 when clean, 1 otherwise
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const OURS = /cudnn_resnet_cpu\.node|\/native\/(common|cpu)\//;

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node test/sanitize/report.mjs <log dir>');
  process.exit(2);
}

const failures = [];
const foreign = new Map(); // allocating function -> { reports, bytes }
const suppressed = new Map(); // suppression -> objects
let leakReports = 0;
let files = 0;

/** The function (or module) of a frame line: "    #3 0x... in napi_create_external (/usr/bin/node+0x...)". */
function frameName(line) {
  const m = /#\d+ 0x[0-9a-f]+ in (.+?)(?: \S+:\d+(?::\d+)?| \([^()]+\))?$/.exec(line) ?? /#\d+ 0x[0-9a-f]+ +\(([^)+]+)/.exec(line);
  const name = m ? m[1] : line.trim();
  return name.length > 100 ? `${name.slice(0, 97)}...` : name;
}

for (const name of readdirSync(dir).sort()) {
  const output = name.startsWith('output.');
  if (!output && !/^asan\.\d+$/.test(name)) continue;
  if (!output) files++;
  const text = readFileSync(join(dir, name), 'utf8');
  const lines = text.split('\n');
  const where = `${name}`;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (output) {
      // UBSan reports here (ASan's reports are in the asan.<pid> files).
      if (/runtime error:/.test(line)) failures.push(`${where}: undefined behaviour\n${lines.slice(i, i + 20).join('\n')}`);
      continue;
    }
    if (/ERROR: AddressSanitizer/.test(line)) {
      const end = lines.findIndex((l, j) => j > i && /^SUMMARY:/.test(l));
      failures.push(`${where}: memory error\n${lines.slice(i, end < 0 ? i + 40 : end + 1).join('\n')}`);
    } else if (/LeakSanitizer has encountered a fatal error|Tracer caught signal/.test(line)) {
      failures.push(`${where}: LeakSanitizer failed, so leaks were not checked: ${line.trim()}`);
    } else if (/^(Direct|Indirect) leak of \d+ byte/.test(line)) {
      leakReports++;
      const frames = [];
      for (let j = i + 1; j < lines.length && /^\s+#\d+ /.test(lines[j]); j++) frames.push(lines[j]);
      const bytes = Number(/of (\d+) byte/.exec(line)[1]);
      if (frames.some((f) => OURS.test(f))) {
        failures.push(`${where}: leak in our code\n${line}\n${frames.join('\n')}`);
      } else {
        // Frame #0 is the allocator itself; #1 is who allocated.
        const key = frames[1] ? frameName(frames[1]) : '(no stack)';
        const entry = foreign.get(key) ?? { reports: 0, bytes: 0 };
        entry.reports++;
        entry.bytes += bytes;
        foreign.set(key, entry);
      }
    } else if (/^Suppressions used:/.test(line)) {
      for (let j = i + 2; j < lines.length && /^\s*\d+\s+\d+\s+\S/.test(lines[j]); j++) {
        const [, count, , pattern] = /^\s*(\d+)\s+(\d+)\s+(\S+)/.exec(lines[j]);
        suppressed.set(pattern, (suppressed.get(pattern) ?? 0) + Number(count));
      }
    }
  }
}

const totalForeign = [...foreign.values()].reduce((s, e) => s + e.reports, 0);
console.log(`sanitize: ${files} report file(s); ${leakReports} leak report(s), ${totalForeign} of them Node's own`);
if (foreign.size) {
  const top = [...foreign.entries()].sort((a, b) => b[1].reports - a[1].reports).slice(0, 8);
  for (const [fn, e] of top) console.log(`  not ours: ${e.reports} report(s), ${e.bytes} bytes, allocated in ${fn}`);
  if (foreign.size > top.length) console.log(`  not ours: ... and ${foreign.size - top.length} other allocating function(s)`);
}
for (const [pattern, count] of suppressed) console.log(`  suppressed (test/sanitize/lsan.supp): ${pattern}: ${count} object(s)`);
if (failures.length) {
  for (const f of failures) console.error(`\n${f}`);
  console.error(`\nsanitize: FAILED: ${failures.length} finding(s) concern our code or stopped the check`);
  process.exit(1);
}
console.log('sanitize: the reports show no memory error, no undefined behaviour and no leak in our code');
