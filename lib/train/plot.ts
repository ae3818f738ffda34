/**
 * Training curves as a self-contained SVG line chart (no dependencies, opens in any browser).
 * @module
 */
import { writeFileSync } from 'node:fs';
import { checkPath } from '../io/file-error.js';
import { checkBool, checkEach, checkNumber, checkOptions, show } from '../util/check.js';

/** One line of a chart. */
export interface Series {
  name: string;
  /** [x, y] points, x increasing. */
  points: [number, number][];
  /** Draw dashed (e.g. training error beside test error). */
  dashed?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Fixed y range; by default the data's. */
  yRange?: [number, number];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceTicks(lo: number, hi: number, count: number): number[] {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  if (!(step > 0) || !Number.isFinite(step)) return [lo];
  // Ticks by index, never by adding the step: across two values one ulp apart (an error of
  // 100 · 0.07 = 7.000000000000001 % beside 7 %) the step is below their resolution, and t +=
  // step would not move. A step of at least span / count makes at most count + 1 ticks.
  const ticks: number[] = [];
  const first = Math.ceil(lo / step);
  for (let k = 0; k <= count + 1; k++) {
    const t = (first + k) * step;
    if (t > hi + step * 1e-9) break;
    const v = Number(t.toPrecision(12));
    if (ticks[ticks.length - 1] !== v) ticks.push(v);
  }
  return ticks;
}

/** The series and options of a chart, checked. */
function checkChart(op: string, series: unknown, options: unknown): [Series[], ChartOptions] {
  if (!Array.isArray(series)) throw new TypeError(`${op}: expected series to be an array of {name, points}, got ${show(series)}`);
  checkEach(series, (s, i) => {
    if (s === null || typeof s !== 'object') throw new TypeError(`${op}: expected series[${i}] to be an object {name, points}, got ${show(s)}`);
    const o = checkOptions(`${op}: series[${i}]`, s, ['name', 'points', 'dashed']);
    if (typeof o.name !== 'string') throw new TypeError(`${op}: expected series[${i}].name to be a string, got ${show(o.name)}`);
    if (o.dashed !== undefined) checkBool(op, `series[${i}].dashed`, o.dashed);
    const points = o.points;
    const isPair = (p: unknown) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'number' && typeof p[1] === 'number';
    if (!Array.isArray(points) || checkEach(points, isPair).includes(false)) {
      throw new TypeError(`${op}: expected series[${i}].points to be an array of [x, y] number pairs, got ${show(points)}`);
    }
  });
  const opts = checkOptions(op, options, ['title', 'xLabel', 'yLabel', 'yRange']);
  if (options === undefined) throw new TypeError(`${op}: expected options with a title, xLabel and yLabel`);
  for (const k of ['title', 'xLabel', 'yLabel'] as const) {
    if (typeof opts[k] !== 'string') throw new TypeError(`${op}: expected ${k} to be a string, got ${show(opts[k])}`);
  }
  if (opts.yRange !== undefined) {
    const r = opts.yRange;
    if (!Array.isArray(r) || r.length !== 2) throw new TypeError(`${op}: expected yRange to be [low, high], got ${show(r)}`);
    const lo = checkNumber(op, 'yRange[0]', r[0]);
    checkNumber(op, 'yRange[1]', r[1], lo, Infinity, { exclusiveMin: true });
  }
  return [series as Series[], opts as unknown as ChartOptions];
}

/** The chart as an SVG document. */
export function renderChart(series: Series[], options: ChartOptions): string {
  return render(...checkChart('renderChart', series, options));
}

function render(series: Series[], options: ChartOptions): string {
  const W = 720;
  const H = 440;
  const m = { left: 70, right: 170, top: 40, bottom: 50 };
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
  const [y0, y1] = options.yRange ?? (ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1]);
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0 || 1)) * (W - m.left - m.right);
  const sy = (y: number) => H - m.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - m.top - m.bottom);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2 - m.right / 2}" y="22" text-anchor="middle" font-size="15">${escape(options.title)}</text>`);
  for (const t of niceTicks(x0, x1, 8)) {
    parts.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${m.top}" y2="${H - m.bottom}" stroke="#eee"/>`);
    parts.push(`<text x="${sx(t)}" y="${H - m.bottom + 16}" text-anchor="middle">${t}</text>`);
  }
  for (const t of niceTicks(y0, y1, 6)) {
    parts.push(`<line x1="${m.left}" x2="${W - m.right}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`);
    parts.push(`<text x="${m.left - 6}" y="${sy(t) + 4}" text-anchor="end">${t}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${W - m.left - m.right}" height="${H - m.top - m.bottom}" fill="none" stroke="#444"/>`);
  parts.push(`<text x="${(m.left + W - m.right) / 2}" y="${H - 12}" text-anchor="middle">${escape(options.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${(m.top + H - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${escape(options.yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    if (pts.length) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} points="${pts.join(' ')}"/>`);
    }
    const ly = m.top + 14 + i * 20;
    parts.push(`<line x1="${W - m.right + 12}" x2="${W - m.right + 40}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    parts.push(`<text x="${W - m.right + 46}" y="${ly}">${escape(s.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** Writes the chart to `path`. */
export function writeChart(path: string, series: Series[], options: ChartOptions): void {
  const file = checkPath('writeChart', path);
  writeFileSync(file, render(...checkChart('writeChart', series, options)));
}
