/**
 * CIFAR `--download`, against a local HTTP server standing in for the official site: the
 * archive is checked against its MD5 before anything is written, and only the expected files
 * are extracted.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { data } from '../lib/index.js';

/** A ustar archive of the given files. */
function tar(files: Record<string, Uint8Array>): Buffer {
  const blocks: Buffer[] = [];
  for (const [name, body] of Object.entries(files)) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(h, Buffer.from(body), Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const record = (label: number, n: number) => Uint8Array.from({ length: n * 3073 }, (_, i) => (i % 3073 === 0 ? label : (i * 7) % 256));
const files: Record<string, Uint8Array> = {};
for (let b = 1; b <= 5; b++) files[`cifar-10-batches-bin/data_batch_${b}.bin`] = record(b, 4);
files['cifar-10-batches-bin/test_batch.bin'] = record(0, 3);
files['cifar-10-batches-bin/readme.html'] = new Uint8Array(10);
const archive = gzipSync(tar(files));
const md5 = createHash('md5').update(archive).digest('hex');

let server: Server;
let base = '';
const root = mkdtempSync(join(tmpdir(), 'cr-dl-'));
beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/cifar-10-binary.tar.gz') res.end(archive);
    else { res.statusCode = 404; res.end(); }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.close();
  rmSync(root, { recursive: true, force: true });
});

describe('downloadCifar', () => {
  test('fetches, verifies and unpacks; loadCifar reads the result', async () => {
    const dir = join(root, 'ok');
    expect(await data.downloadCifar({ variant: 10, dir, url: `${base}/cifar-10-binary.tar.gz`, md5 })).toBe(dir);
    const train = await data.loadCifar({ variant: 10, dir, split: 'train' });
    expect(train.n).toBe(20);
    expect(Array.from(train.labels.subarray(0, 5))).toEqual([1, 1, 1, 1, 2]);
    expect((await data.loadCifar({ variant: 10, dir, split: 'test' })).n).toBe(3);
    expect(existsSync(join(dir, 'readme.html'))).toBe(false);
    // Present files are not fetched again (the URL now fails).
    expect(await data.downloadCifar({ variant: 10, dir, url: `${base}/gone`, md5 })).toBe(dir);
  });

  test('a wrong checksum writes nothing; a missing archive names the status', async () => {
    const dir = join(root, 'bad');
    await expect(data.downloadCifar({ variant: 10, dir, url: `${base}/cifar-10-binary.tar.gz` }))
      .rejects.toThrow(new RegExp(`MD5 ${md5}, expected c32a1d4ab5d03f1284b67883e8d87530`));
    expect(existsSync(dir)).toBe(false);
    await expect(data.downloadCifar({ variant: 10, dir, url: `${base}/nope.tar.gz`, md5 })).rejects.toThrow(/answered 404/);
    await expect(data.downloadCifar({ variant: 7 as never })).rejects.toThrow(TypeError);
  });
});
