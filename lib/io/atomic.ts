/**
 * Atomic file replacement: a reader of `path` sees the old file or the new one, never a torn
 * one, even if the process dies mid-write (a checkpoint written during a crash must not destroy
 * the previous checkpoint).
 * @internal
 * @module
 */
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

// The temporary file must be in the target's directory: rename() is atomic only within one
// file system.
function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files that writers of `path` killed mid-write left behind (a run
 * SIGKILLed while saving every epoch would otherwise collect one per kill). Only files of
 * processes that no longer exist are touched: a live writer's file is its own.
 */
function sweepStale(path: string): void {
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const pid = Number(name.slice(prefix.length).split('.')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || alive(pid)) continue;
    try {
      unlinkSync(join(dirname(path), name));
    } catch {
      // Another writer swept it first.
    }
  }
}

/**
 * Writes `chunks` to a temporary file beside `path`, fsyncs it, renames it over `path` and
 * fsyncs the directory (so that the rename itself survives a power loss). Temporary files of
 * earlier writers that died mid-write are removed first. @internal
 */
export async function writeFileAtomic(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  sweepStale(path);
  const tmp = tempPathFor(path);
  const fh = await open(tmp, 'wx');
  try {
    try {
      // A single write may be partial (Linux caps one at about 2 GiB): loop until each chunk is out.
      for (const c of chunks) {
        let done = 0;
        while (done < c.byteLength) done += (await fh.write(c, done, c.byteLength - done)).bytesWritten;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** `writeFileAtomic`, blocking. @internal */
export function writeFileAtomicSync(path: string, chunks: readonly Uint8Array[]): void {
  sweepStale(path);
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'wx');
  try {
    try {
      for (const c of chunks) {
        let done = 0;
        while (done < c.byteLength) done += writeSync(fd, c, done, c.byteLength - done);
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // The temporary file may never have been created; the original error is what matters.
    }
    throw err;
  }
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
