/**
 * `--download` for CIFAR: fetches the official binary archive on a machine that is online,
 * verifies its MD5 against the published checksum before unpacking anything, and extracts only
 * the expected `.bin` files (no paths from the archive are trusted).
 * @module
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { checkOptions, show } from '../util/check.js';
import { dataRoot } from './dataset.js';

/** The official archives and the files each must provide. */
export const CIFAR_ARCHIVES = Object.freeze({
  10: {
    url: 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz',
    md5: 'c32a1d4ab5d03f1284b67883e8d87530',
    folder: 'cifar-10-batches-bin',
    files: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin'],
  },
  100: {
    url: 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz',
    md5: '03b5dce01913d631647c71ecec9e9cb8',
    folder: 'cifar-100-binary',
    files: ['train.bin', 'test.bin'],
  },
});

export interface DownloadCifarOptions {
  /** 10 or 100 (default 10). */
  variant?: 10 | 100;
  /** The folder to hold the `.bin` files (what `loadCifar`'s `dir` names); default as `loadCifar`. */
  dir?: string;
  /** Another address of the same archive (a mirror); the MD5 is still checked. */
  url?: string;
  /** The expected MD5, when `url` serves a different archive of the same layout. */
  md5?: string;
}

/** Reads a NUL-terminated field of a tar header. */
function field(block: Uint8Array, start: number, length: number): string {
  const bytes = block.subarray(start, start + length);
  const end = bytes.indexOf(0);
  return Buffer.from(end < 0 ? bytes : bytes.subarray(0, end)).toString('utf8');
}

/** The regular files of a tar archive, by path. */
function untar(op: string, tar: Uint8Array): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  let offset = 0;
  while (offset + 512 <= tar.length) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const name = field(header, 0, 100);
    const prefix = field(header, 345, 155);
    const size = Number.parseInt(field(header, 124, 12).trim() || '0', 8);
    const type = String.fromCharCode(header[156]!);
    if (!Number.isFinite(size) || size < 0 || offset + 512 + size > tar.length) {
      throw new Error(`${op}: the archive is damaged (tar entry '${name}' at byte ${offset} runs past the end)`);
    }
    if (type === '0' || type === '\0') files.set(prefix ? `${prefix}/${name}` : name, tar.subarray(offset + 512, offset + 512 + size));
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

/**
 * Downloads and unpacks CIFAR-10 or CIFAR-100 (binary version) into `dir`, unless its files
 * are already there. Resolves to `dir`. Needs network access; the archive's MD5 must match.
 */
export async function downloadCifar(options?: DownloadCifarOptions): Promise<string> {
  const op = 'downloadCifar';
  const opts = checkOptions(op, options, ['variant', 'dir', 'url', 'md5']);
  const variant = opts.variant ?? 10;
  if (variant !== 10 && variant !== 100) throw new TypeError(`${op}: expected variant to be 10 or 100, got ${show(variant)}`);
  const archive = CIFAR_ARCHIVES[variant];
  for (const k of ['dir', 'url', 'md5'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'string') throw new TypeError(`${op}: expected ${k} to be a string, got ${show(opts[k])}`);
  }
  const dir = (opts.dir as string | undefined) ?? join(dataRoot(), archive.folder);
  if (archive.files.every((f) => existsSync(join(dir, f)))) return dir;
  const url = (opts.url as string | undefined) ?? archive.url;
  const md5 = ((opts.md5 as string | undefined) ?? archive.md5).toLowerCase();
  let response: Response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new Error(`${op}: cannot download ${url} (${(err as Error).message}); this needs network access, or place the unpacked .bin files in ${dir}`);
  }
  if (!response.ok) throw new Error(`${op}: ${url} answered ${response.status} ${response.statusText}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const actual = createHash('md5').update(bytes).digest('hex');
  if (actual !== md5) throw new Error(`${op}: ${url} has MD5 ${actual}, expected ${md5}: the download is corrupt or not the official archive; nothing was written`);
  const members = untar(op, gunzipSync(bytes));
  const found = archive.files.map((f) => {
    const data = members.get(`${archive.folder}/${f}`);
    if (!data) throw new Error(`${op}: the archive from ${url} has no ${archive.folder}/${f}`);
    return [f, data] as const;
  });
  mkdirSync(dir, { recursive: true });
  for (const [f, data] of found) {
    const tmp = join(dir, `.${f}.${process.pid}.tmp`);
    writeFileSync(tmp, data);
    renameSync(tmp, join(dir, f));
  }
  return dir;
}
