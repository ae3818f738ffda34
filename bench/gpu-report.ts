/**
 * The table scripts/gpu-check.sh ends with: training throughput of this library next to PyTorch
 * on the same GPU, from the JSON files bench/gpu.ts and bench/gpu_torch.py wrote. A missing or
 * unreadable file gives a row of dashes, not a crash: the other side's numbers still print.
 * Our eager and captured steps (`step` eager / graph) are each set against PyTorch's eager one.
 *
 *     node --import tsx bench/gpu-report.ts ours.json torch.json
 */
import { readFileSync } from 'node:fs';

interface Row { model: string; batch: number; tf32: boolean; captured?: boolean; imgPerSec: number; msPerStep?: number }
interface Result { device?: string; rows: Row[]; [key: string]: unknown }

function read(file: string | undefined): Result {
  try {
    return JSON.parse(readFileSync(file ?? '', 'utf8')) as Result;
  } catch {
    return { rows: [] };
  }
}

const [oursFile, torchFile] = process.argv.slice(2);
const ours = read(oursFile);
const torch = read(torchFile);
const same = (a: Row, b: Row) => a.model === b.model && a.tf32 === b.tf32 && Boolean(a.captured) === Boolean(b.captured);
const keys = [...ours.rows, ...torch.rows].filter((r, i, all) => all.findIndex((o) => same(o, r)) === i);
const cell = (r: Row | undefined) => (r ? r.imgPerSec.toFixed(1) : '-');
const lines = [
  `${ours.device ?? torch.device ?? 'GPU'}: training images/s, float32 NCHW (TF32 on: convolutions in TF32)`,
  'model      batch  tf32  step   cudnn-resnet   pytorch   ratio',
];
for (const k of keys) {
  const o = ours.rows.find((r) => same(r, k));
  const t = torch.rows.find((r) => r.model === k.model && r.tf32 === k.tf32);
  const ratio = o && t ? (o.imgPerSec / t.imgPerSec).toFixed(2) : '-';
  lines.push(`${k.model.padEnd(10)} ${String(k.batch).padStart(5)}  ${(k.tf32 ? 'on' : 'off').padEnd(5)} ${(k.captured ? 'graph' : 'eager').padEnd(5)} ` +
    `${cell(o).padStart(13)} ${cell(t).padStart(9)} ${ratio.padStart(7)}`);
}
if (keys.length === 0) lines.push('(no results: see the benchmarks\' output above)');
console.log(lines.join('\n'));
