/**
 * `cudnn-resnet experiment degradation`: the contrast of He et al. (2015), Figure 6. Plain
 * networks train worse as they get deeper; residual networks of the same depths train better.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeChart, type Series } from '../train/plot.js';
import { type RunOptions, runTraining } from './run.js';

/** Trains plain and residual networks of each depth with one recipe and draws their curves. */
export async function degradation(depthsArg: string | undefined, base: RunOptions, log: (line: string) => void): Promise<void> {
  const depths = (depthsArg ?? '20,56').split(',').map((s) => Number(s.trim()));
  for (const d of depths) {
    if (!Number.isInteger(d) || d < 8 || (d - 2) % 6 !== 0) throw new RangeError(`--depths: each depth must be 6n+2 (20, 32, 44, 56, 110), got '${depthsArg}'`);
  }
  const out = base.out.startsWith('runs/resnet-') || base.out.startsWith('runs/plain-') ? join('runs', 'degradation') : base.out;
  mkdirSync(out, { recursive: true });
  const results: { name: string; depth: number; plain: boolean; trainError: number[]; testError: number[] }[] = [];
  for (const plain of [true, false]) {
    for (const depth of depths) {
      const name = `${plain ? 'plain' : 'ResNet'}-${depth}`;
      log(`== ${name}`);
      const r = await runTraining({ ...base, model: plain ? 'plain' : 'resnet', depth, out: join(out, name) }, { resume: false, progress: true, log });
      // Under `launch`, only rank 0 reports.
      if (!r) continue;
      results.push({ name, depth, plain, trainError: r.history.map((m) => 100 * m.trainError), testError: r.history.map((m) => 100 * (m.testError ?? Number.NaN)) });
    }
  }
  const series = (key: 'trainError' | 'testError'): Series[] => results.map((r) => ({
    name: r.name, points: r[key].map((e, i) => [i + 1, e] as [number, number]), dashed: r.plain,
  }));
  const figure = join(out, 'degradation.svg');
  writeChart(figure, series('trainError'), { title: `Training error, ${base.dataset} (dashed: plain)`, xLabel: 'epoch', yLabel: 'training error (%)' });
  writeChart(join(out, 'degradation-test.svg'), series('testError'), { title: `Test error, ${base.dataset} (dashed: plain)`, xLabel: 'epoch', yLabel: 'test error (%)' });
  writeFileSync(join(out, 'degradation.json'), `${JSON.stringify({ options: base, results }, null, 2)}\n`);
  log('final training error (test error):');
  for (const r of results) log(`  ${r.name.padEnd(10)} ${r.trainError.at(-1)!.toFixed(2)}% (${r.testError.at(-1)!.toFixed(2)}%)`);
  log(`figure: ${figure}`);
}
