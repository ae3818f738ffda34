/**
 * The table scripts/gpu-check.sh ends with: training throughput of this library next to PyTorch
 * on the same GPU, from the JSON files bench/gpu.ts and bench/gpu_torch.py wrote (float32, and
 * bfloat16 autocast when given). A missing or unreadable file gives a row of dashes, not a
 * crash: the other side's numbers still print. Our eager and captured steps (`step` eager /
 * graph) are each set against PyTorch's eager one of the same precision.
 *
 *     node --import tsx bench/gpu-report.ts ours.json torch.json [ours-bf16.json torch-bf16.json]
 */
import { readFileSync } from 'node:fs';

// `precision` is absent from the files of float32-only runs.
interface Row { model: string; batch: number; precision?: 'fp32' | 'bf16'; tf32: boolean; captured?: boolean; imgPerSec: number; msPerStep?: number }
interface Result { device?: string; rows: Row[]; [key: string]: unknown }

function read(file: string | undefined): Result {
  try {
    return JSON.parse(readFileSync(file ?? '', 'utf8')) as Result;
  } catch {
    return { rows: [] };
  }
}

const [oursFile, torchFile, oursBf16File, torchBf16File] = process.argv.slice(2);
const merged = (...files: (string | undefined)[]): Result => {
  const results = files.filter((f) => f !== undefined).map(read);
  return { device: results.find((r) => r.device)?.device, rows: results.flatMap((r) => r.rows) };
};
const ours = merged(oursFile, oursBf16File);
const torch = merged(torchFile, torchBf16File);
const precisionOf = (r: Row) => r.precision ?? 'fp32';
const sameRun = (a: Row, b: Row) => a.model === b.model && a.tf32 === b.tf32 && precisionOf(a) === precisionOf(b);
const same = (a: Row, b: Row) => sameRun(a, b) && Boolean(a.captured) === Boolean(b.captured);
const keys = [...ours.rows, ...torch.rows].filter((r, i, all) => all.findIndex((o) => same(o, r)) === i);
const cell = (r: Row | undefined) => (r ? r.imgPerSec.toFixed(1) : '-');
const lines = [
  `${ours.device ?? torch.device ?? 'GPU'}: training images/s; fp32: NCHW (TF32 on: convolutions in TF32); ` +
    'bf16: autocast, NHWC (ours) / channels_last (PyTorch); ours eager or captured (graph), PyTorch eager',
  'model      batch  prec  tf32  step   cudnn-resnet   pytorch   ratio',
];
for (const k of keys) {
  const o = ours.rows.find((r) => same(r, k));
  const t = torch.rows.find((r) => sameRun(r, k) && !r.captured);
  const ratio = o && t ? (o.imgPerSec / t.imgPerSec).toFixed(2) : '-';
  const tf32 = precisionOf(k) === 'bf16' ? '-' : k.tf32 ? 'on' : 'off';
  lines.push(`${k.model.padEnd(10)} ${String(k.batch).padStart(5)}  ${precisionOf(k).padEnd(5)} ${tf32.padEnd(5)} ` +
    `${(k.captured ? 'graph' : 'eager').padEnd(5)} ${cell(o).padStart(13)} ${cell(t).padStart(9)} ${ratio.padStart(7)}`);
}
if (keys.length === 0) lines.push('(no results: see the benchmarks\' output above)');
console.log(lines.join('\n'));
