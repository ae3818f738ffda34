/**
 * Positioned reads of an exact length, for the file readers: a short read (the file shrank while
 * being read) is a format error at the offset where the data ran out.
 * @internal
 * @module
 */
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { fileFormatError } from './file-error.js';

/** `len` bytes at `pos`; `pos + len` must already be known to lie within the file. @internal */
export async function readExactly(op: string, path: string, fh: FileHandle, pos: number, len: number): Promise<Uint8Array> {
  const out = new Uint8Array(len);
  let done = 0;
  while (done < len) {
    const { bytesRead } = await fh.read(out, done, len - done, pos + done);
    if (bytesRead === 0) throw fileFormatError(op, path, pos + done, 'file ended early (it changed while being read?)');
    done += bytesRead;
  }
  return out;
}

/** `readExactly`, blocking. @internal */
export function readExactlySync(op: string, path: string, fd: number, pos: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let done = 0;
  while (done < len) {
    const got = readSync(fd, out, done, len - done, pos + done);
    if (got === 0) throw fileFormatError(op, path, pos + done, 'file ended early (it changed while being read?)');
    done += got;
  }
  return out;
}
