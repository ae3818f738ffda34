/**
 * `cudnn-resnet info`: backends, versions, devices, and what is missing with how to fix it.
 * @module
 */
import { backends } from '../backend/backends.js';

/** The report `info` prints, one line per fact. */
export function infoReport(): string {
  const lines: string[] = [`cudnn-resnet on Node ${process.versions.node} (N-API ${process.versions.napi}), ${process.platform}-${process.arch}`];
  for (const b of backends()) {
    const versions = Object.entries(b.versions).map(([k, v]) => `${k} ${v}`).join(', ');
    lines.push(`${b.name}: ${b.available ? 'available' : 'unavailable'}${versions ? ` (${versions})` : ''}`);
    for (const [k, v] of Object.entries(b.details)) lines.push(`  ${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
    if (b.reason) lines.push(...b.reason.split('\n').map((l) => `  ${l}`));
  }
  const forced = process.env.CUDNN_RESNET_BACKEND;
  if (forced) lines.push(`CUDNN_RESNET_BACKEND=${forced} selects the default backend`);
  return lines.join('\n');
}
