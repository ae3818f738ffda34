/**
 * Turns the benchmark children's messages into results, and results into the table (console and
 * Markdown), the breakdown of this library's training step, and the generated section of
 * docs/benchmarks.md.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { type LoopDelay, type Phase, summarize } from './harness.js';

export interface JobSpec {
  key: string;
  framework: string;
  /** The arithmetic: fp32, or mixed precision (bf16, fp16). */
  precision: 'fp32' | 'bf16' | 'fp16';
  variant: string;
  device: 'cpu' | 'cuda';
  model: 'resnet20' | 'resnet50';
  batch: number;
  phase: Phase;
  budgetS: number;
  /** Extra seconds after the budget for this library's profiled steps (the breakdown). */
  profileS: number;
  reps: number;
}

export interface Meta {
  framework: string;
  version: string;
  params: number;
  threads: number | null;
  notes?: string;
}

export interface Breakdown {
  steps: number;
  backend: string;
  wallMs: number;
  busyMs: number;
  idleMs: number;
  ops: { op: string; calls: number; totalMs: number }[];
  js: { forward: number; backward: number; optimizer: number };
}

export interface JobResult extends JobSpec {
  status: 'ok' | 'budget' | 'cannot' | 'unavailable' | 'failed';
  meta: Meta | null;
  warmupMs: number[];
  stepsMs: number[];
  /** From the timed steps, or from the warm-up steps (`cold`) when no timed step finished. */
  imgPerSec: { median: number; min: number; max: number } | null;
  cold: boolean;
  /** When no step finished: the throughput was below this (batch / seconds spent). */
  below: number | null;
  eld: LoopDelay | null;
  /** A synchronous framework killed mid-step: the event loop had been blocked at least this long. */
  eldAtLeastMs: number | null;
  error: string | null;
  breakdown: Breakdown | null;
  budgetUsedS: number;
  wallS: number;
  summary: string;
  /** The 1-minute load average when the job started (other processes make numbers noisy). */
  loadAverage?: number;
}

export interface RunFacts {
  exitCode: number | null;
  killedAfterS: number | null;
  blockedAtKillS: number | null;
  budgetUsedS: number;
  wallS: number;
  log: string;
}

export interface Report {
  date: string;
  command: string;
  machine: { cpu: string; logicalCores: number; threads: number; loadAverageBefore: number; loadAverageAfter: number };
  versions: Record<string, string>;
  notes: string[];
  results: JobResult[];
  totalS: number;
}

type Message = { type: string; [k: string]: unknown };

const SYNCHRONOUS = (framework: string) => framework.startsWith('tfjs');

export function summarizeJob(job: JobSpec, messages: Message[], run: RunFacts): JobResult {
  const steps = messages.filter((m) => m.type === 'step') as unknown as { ms: number; warm: boolean; eld?: LoopDelay | null }[];
  const warmupMs = steps.filter((s) => s.warm).map((s) => s.ms);
  const stepsMs = steps.filter((s) => !s.warm).map((s) => s.ms);
  const meta = (messages.find((m) => m.type === 'meta') as unknown as Meta | undefined) ?? null;
  const unavailable = messages.find((m) => m.type === 'unavailable');
  const cannot = messages.find((m) => m.type === 'cannot');
  const done = messages.some((m) => m.type === 'done');
  const breakdown = (messages.find((m) => m.type === 'breakdown') as unknown as Breakdown | undefined) ?? null;
  const samples = stepsMs.length > 0 ? stepsMs : warmupMs;
  const stat = samples.length > 0 ? summarize(samples) : null;
  const imgPerSec = stat ? { median: (job.batch * 1000) / stat.medianMs, min: (job.batch * 1000) / stat.maxMs, max: (job.batch * 1000) / stat.minMs } : null;
  const eld = [...steps].reverse().find((s) => s.eld)?.eld ?? null;
  const killed = run.killedAfterS !== null;
  let status: JobResult['status'] = 'ok';
  let error: string | null = null;
  if (unavailable) {
    status = 'unavailable';
    error = String(unavailable.reason);
  } else if (cannot) {
    status = 'cannot';
    error = String(cannot.error);
  } else if (killed) {
    status = 'budget';
  } else if (run.exitCode !== 0 || !done) {
    status = 'failed';
    error = `exit code ${run.exitCode}: ${run.log.trim().split('\n').slice(-3).join(' | ')}`;
  }
  const result: JobResult = {
    ...job, status, meta, warmupMs, stepsMs, imgPerSec, cold: stepsMs.length === 0 && warmupMs.length > 0,
    below: imgPerSec === null && status === 'budget' ? job.batch / Math.max(run.budgetUsedS, 1e-3) : null,
    eld,
    eldAtLeastMs: killed && SYNCHRONOUS(job.framework) && run.blockedAtKillS !== null ? run.blockedAtKillS * 1000 : null,
    error, breakdown, budgetUsedS: run.budgetUsedS, wallS: run.wallS, summary: '',
  };
  result.summary = `${throughputCell(result)}${result.eld || result.eldAtLeastMs ? `; event loop ${eldCell(result)} ms` : ''} (${run.wallS.toFixed(0)} s)`;
  return result;
}

// --- cells -------------------------------------------------------------------------------------

const f1 = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toPrecision(2));

function throughputCell(r: JobResult): string {
  if (r.status === 'unavailable') return `unavailable: ${r.error}`;
  if (r.status === 'cannot') return `cannot ${r.phase === 'train' ? 'train' : 'run'}: ${r.error}`;
  if (r.status === 'failed') return `failed (${r.error})`;
  if (r.imgPerSec === null) {
    return r.below === null ? '—' : `< ${f1(r.below)} (0 steps in ${f1(r.budgetUsedS)} s: killed at its budget)`;
  }
  const { median, min, max } = r.imgPerSec;
  const n = r.cold ? r.warmupMs.length : r.stepsMs.length;
  let cell = n > 1 ? `${f1(median)} (${f1(min)}–${f1(max)})` : f1(median);
  const steps = `${n} step${n > 1 ? 's' : ''}`;
  if (r.cold) cell += ` (${steps}, cold: no time for a warm-up in the ${f1(r.budgetS)} s budget)`;
  else if (n < r.reps) cell += ` (${steps}: the ${f1(r.budgetS)} s budget allowed no more)`;
  return cell;
}

function ratioCell(ours: JobResult | undefined, r: JobResult): string {
  const o = ours?.imgPerSec?.median;
  if (o === undefined) return '—';
  if (r.imgPerSec) return `${(o / r.imgPerSec.median).toFixed(2)}×`;
  if (r.below !== null) return `> ${f1(o / r.below)}×`;
  return '—';
}

function eldCell(r: JobResult | undefined): string {
  if (!r) return '—';
  if (r.eldAtLeastMs !== null) return `${r.eld ? r.eld.p99Ms.toFixed(0) : '—'} / ≥ ${Math.max(r.eldAtLeastMs, r.eld?.maxMs ?? 0).toFixed(0)}`;
  if (!r.eld) return r.framework === 'torch' ? 'n/a (Python)' : '—';
  return `${r.eld.p99Ms.toFixed(1)} / ${r.eld.maxMs.toFixed(1)}`;
}

const MODEL_NAMES = { resnet20: 'ResNet-20', resnet50: 'ResNet-50' };

const PRECISION_LABELS = { fp32: '', bf16: ', bf16 mixed precision', fp16: ', fp16 mixed precision' };

function frameworkLabel(r: JobResult): string {
  const v = r.meta?.version;
  const precision = PRECISION_LABELS[r.precision];
  if (r.framework === 'ours') {
    // --cpu-addon LABEL=DIR: the CPU addon of another build (another oneDNN), variant ...@LABEL.
    const label = r.variant.includes('@') ? `, ${r.variant.slice(r.variant.indexOf('@') + 1)}` : '';
    return `**cudnn-resnet** ${r.device === 'cpu' ? `cpu (oneDNN${oneDnnVersion(v)}${label})` : 'cuda (cuDNN)'}${precision}`;
  }
  switch (r.variant) {
    case 'torch-nchw': return `PyTorch ${v ?? ''} NCHW`;
    case 'torch-channels-last': return `PyTorch ${v ?? ''} channels_last`;
    case 'torch-channels-last-bf16': return `PyTorch ${v ?? ''} channels_last, autocast bf16`;
    default: return `${r.variant.replace(/^tfjs-/, 'tfjs ')} ${v ? v.split(' ')[0] : ''}`;
  }
}

/** ' 2.6.3' from this library's meta version ('onednn 2.6.3, openmp 201511'), or ''. */
function oneDnnVersion(version: string | undefined): string {
  const m = /onednn ([\d.]+)/.exec(version ?? '');
  return m ? ` ${m[1]}` : '';
}

/** This library's variant in a device's group at a precision: what "ours ÷ this" divides. */
function oursVariant(device: string, precision: JobResult['precision']): string {
  return precision === 'fp32' ? `ours-${device}` : `ours-${device}-${precision}`;
}

function threadsCell(rows: JobResult[]): string {
  const m = rows.find((r) => r.meta)?.meta;
  if (!m) return '—';
  if (m.threads === null) return rows[0]!.device === 'cuda' ? 'GPU' : 'default';
  return String(m.threads);
}

// --- the table ---------------------------------------------------------------------------------

interface Group { device: string; model: 'resnet20' | 'resnet50'; batch: number; variants: Map<string, { train?: JobResult; infer?: JobResult }> }

function groups(results: JobResult[]): Group[] {
  const out: Group[] = [];
  for (const r of results) {
    let g = out.find((x) => x.device === r.device && x.model === r.model && x.batch === r.batch);
    if (!g) out.push((g = { device: r.device, model: r.model, batch: r.batch, variants: new Map() }));
    const v = g.variants.get(r.variant) ?? {};
    v[r.phase] = r;
    g.variants.set(r.variant, v);
  }
  return out;
}

export function renderTable(report: Report): string {
  const lines = [
    '| device | network | batch | framework | threads | params | training img/s (min–max) | ours ÷ this | inference img/s (min–max) | ours ÷ this | event loop p99 / max, ms (training) |',
    '|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const g of groups(report.results)) {
    for (const [, v] of g.variants) {
      const rows = [v.train, v.infer].filter((r): r is JobResult => r !== undefined);
      const any = rows[0]!;
      // Against this library at the row's precision: fp32 rows against ours in fp32, bf16 against ours in bf16.
      const ours = g.variants.get(oursVariant(g.device, any.precision)) ?? {};
      const params = rows.find((r) => r.meta)?.meta?.params;
      const eld = v.train && (v.train.eld || v.train.eldAtLeastMs !== null) ? eldCell(v.train)
        : v.infer && (v.infer.eld || v.infer.eldAtLeastMs !== null) ? `${eldCell(v.infer)} (inference)` : eldCell(v.train);
      lines.push(`| ${g.device} | ${MODEL_NAMES[g.model]} | ${g.batch} | ${frameworkLabel(any)} | ${threadsCell(rows)} | ${params?.toLocaleString('en-US') ?? '—'} | ` +
        `${v.train ? throughputCell(v.train) : '—'} | ${v.train ? ratioCell(ours.train, v.train) : '—'} | ` +
        `${v.infer ? throughputCell(v.infer) : '—'} | ${v.infer ? ratioCell(ours.infer, v.infer) : '—'} | ${eld} |`);
    }
  }
  lines.push('', ...headlines(report), ...paramCheck(report.results));
  return lines.join('\n');
}

/** Whether every framework built the same network: its trainable-parameter count, per network. */
function paramCheck(results: JobResult[]): string[] {
  const out: string[] = [];
  for (const model of ['resnet20', 'resnet50'] as const) {
    const counts = new Map<number, Set<string>>();
    for (const r of results) {
      if (r.model !== model || !r.meta) continue;
      if (!counts.has(r.meta.params)) counts.set(r.meta.params, new Set());
      counts.get(r.meta.params)!.add(r.variant);
    }
    if (counts.size === 1) {
      const [[n, who]] = [...counts];
      out.push(`- ${MODEL_NAMES[model]}: ${n!.toLocaleString('en-US')} trainable parameters in every framework that ran (${[...who!].join(', ')}).`);
    } else if (counts.size > 1) {
      out.push(`- **${MODEL_NAMES[model]}: parameter counts differ**: ${[...counts].map(([n, who]) => `${n.toLocaleString('en-US')} (${[...who].join(', ')})`).join('; ')}.`);
    }
  }
  return out;
}

/**
 * One sentence per network, phase and precision: this library against PyTorch's best layout at
 * that precision (fp32: NCHW or channels_last; bf16: channels_last under autocast), against
 * tfjs (fp32), and in mixed precision against its own fp32.
 */
function headlines(report: Report): string[] {
  const out: string[] = [];
  for (const g of groups(report.results)) {
    for (const phase of ['train', 'infer'] as const) {
      const fp32 = g.variants.get(oursVariant(g.device, 'fp32'))?.[phase];
      for (const precision of ['fp32', 'bf16', 'fp16'] as const) {
        const ours = g.variants.get(oursVariant(g.device, precision))?.[phase];
        if (!ours?.imgPerSec) continue;
        const parts: string[] = [];
        const torch = [...g.variants.entries()].filter(([k]) => k.startsWith('torch')).map(([k, v]) => [k, v[phase]] as const)
          .filter(([, r]) => r?.imgPerSec && r.precision === precision).sort((a, b) => b[1]!.imgPerSec!.median - a[1]!.imgPerSec!.median);
        if (torch.length > 0) {
          const [k, best] = torch[0]!;
          const which = k === 'torch-nchw' ? 'NCHW' : k === 'torch-channels-last' ? 'channels_last' : 'channels_last, autocast bf16';
          parts.push(`${ratioCell(ours, best!)} PyTorch's best (${which})`);
        }
        for (const [k, v] of g.variants) {
          const r = v[phase];
          if (precision === 'fp32' && k.startsWith('tfjs') && r && (r.imgPerSec || r.below !== null)) parts.push(`${ratioCell(ours, r)} ${k.replace('-', ' ')}`);
        }
        if (precision !== 'fp32' && fp32?.imgPerSec) parts.push(`${ratioCell(ours, fp32)} its own fp32`);
        const what = precision === 'fp32' ? 'cudnn-resnet' : `cudnn-resnet in ${precision}`;
        if (parts.length) out.push(`- ${MODEL_NAMES[g.model]}, batch ${g.batch}, ${g.device}, ${phase === 'train' ? 'training' : 'inference'}: ${what} runs at ${parts.join(', ')}.`);
      }
    }
  }
  return out;
}

// --- the breakdown -----------------------------------------------------------------------------

const CATEGORIES: [string, RegExp][] = [
  ['convolutions (forward, backward data, backward weights)', /^conv2d/],
  ['batch norm (forward, backward)', /^batchNorm/],
  ['element-wise (relu, add, addRelu and their backward)', /^(relu|reluBackward|add|addRelu|scale)$/],
  ['layout and type conversions (weights to/from blocked formats, casts)', /^(reorder|reshape|cast)$/],
  ['optimizer (one sgdStep over all parameters; fp16: the overflow check)', /^(sgdStep|countNonFinite)$/],
  ['pooling, linear, loss', /^(maxPool|avgPool|linear|softmaxCrossEntropy)/],
  ['other (fill, sync, …)', /./],
];

export function renderBreakdown(r: JobResult): string {
  const b = r.breakdown!;
  const per = (ms: number) => ms / b.steps;
  const pct = (ms: number) => `${((100 * ms) / b.wallMs).toFixed(1)}%`;
  const lines = [
    `${MODEL_NAMES[r.model]}, batch ${r.batch}, ${b.backend}${r.precision === 'fp32' ? '' : `, ${r.precision}`}: \`profile()\` over ${b.steps} training steps (after the timed ones), ${f1(per(b.wallMs))} ms per step.`,
    '',
    '| component | ms / step | share | native ops / step |',
    '|---|---:|---:|---:|',
  ];
  const left = [...b.ops];
  for (const [name, re] of CATEGORIES) {
    const mine = left.filter((o) => re.test(o.op));
    if (mine.length === 0) continue;
    for (const o of mine) left.splice(left.indexOf(o), 1);
    const ms = mine.reduce((s, o) => s + o.totalMs, 0);
    const calls = mine.reduce((s, o) => s + o.calls, 0);
    lines.push(`| ${name} | ${per(ms).toFixed(2)} | ${pct(ms)} | ${(calls / b.steps).toFixed(0)} |`);
  }
  lines.push(`| worker idle: waiting for JavaScript to enqueue ops, and the hand-back at the end | ${per(b.idleMs).toFixed(2)} | ${pct(b.idleMs)} | |`);
  lines.push(`| **step (wall time)** | **${per(b.wallMs).toFixed(2)}** | 100% | |`);
  const js = b.js;
  lines.push('', `JavaScript thread per step (building the graph and enqueueing; it overlaps the worker's execution): forward ${per(js.forward).toFixed(2)} ms, ` +
    `backward ${per(js.backward).toFixed(2)} ms, optimizer ${per(js.optimizer).toFixed(2)} ms.`);
  lines.push('', `Per op (ms / step, calls / step): ${b.ops.map((o) => `${o.op} ${per(o.totalMs).toFixed(2)} (${(o.calls / b.steps).toFixed(0)})`).join(', ')}.`);
  return lines.join('\n');
}

// --- Markdown ----------------------------------------------------------------------------------

export function renderMarkdown(report: Report): string {
  const m = report.machine;
  const loads = report.results.map((r) => r.loadAverage ?? 0);
  const maxLoad = Math.max(m.loadAverageBefore, m.loadAverageAfter, ...loads);
  // This benchmark itself keeps about `threads` cores busy.
  const busy = m.loadAverageBefore > m.logicalCores * 0.5 || maxLoad > m.threads + 1;
  const lines = [
    `Generated by \`${report.command}\` on ${report.date.slice(0, 10)} in ${(report.totalS / 60).toFixed(1)} min.`,
    '',
    `- Machine: ${m.cpu}, ${m.logicalCores} logical cores; ${m.threads} threads for every framework that can use them (see "Method"). ` +
      `Load average (1 min) ${m.loadAverageBefore.toFixed(2)} before the run, ${m.loadAverageAfter.toFixed(2)} after, ` +
      `${maxLoad.toFixed(2)} at most at the start of a job` +
      (busy ? ': **the machine may not have been quiet (a load average counts the last minute), so these numbers may be noisy**.' : '.'),
    `- Versions: ${Object.entries(report.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`,
    '',
    renderTable(report),
  ];
  const notes = [...report.notes];
  for (const r of report.results) {
    if (r.status === 'failed') notes.push(`${r.key}: ${r.error}`);
  }
  if (notes.length) lines.push('', 'Not measured here:', '', ...notes.map((n) => `- ${n}`));
  const withBreakdown = report.results.filter((r) => r.breakdown);
  if (withBreakdown.length) {
    lines.push('', '#### Where this library\'s training step spends its time', '');
    for (const r of withBreakdown) lines.push(renderBreakdown(r), '');
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

const BEGIN = '<!-- bench:begin (generated by `npm run bench`; edits here are replaced) -->';
const END = '<!-- bench:end -->';

/** Replaces the generated section of docs/benchmarks.md. */
export function updateDocs(path: string, markdown: string): void {
  const doc = readFileSync(path, 'utf8');
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${path}: no generated section (${BEGIN} … ${END}) to replace`);
  writeFileSync(path, `${doc.slice(0, a + BEGIN.length)}\n\n${markdown}\n${doc.slice(b)}`);
}
