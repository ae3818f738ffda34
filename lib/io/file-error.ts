/**
 * The one shape of error for a file whose contents are wrong: which function, which file, where
 * in it and what is wrong, with a `code` a caller can branch on.
 * @internal
 * @module
 */
import { show } from '../util/check.js';

/** An error about a file's contents, carrying the file and the byte offset. @internal */
export interface FileFormatError extends Error {
  code: 'ERR_FILE_FORMAT';
  path: string;
  offset: number | null;
}

/**
 * `op: path: reason (at byte offset N)`. `offset` is null when the problem has no one place
 * (a file too short to hold anything, say). @internal
 */
export function fileFormatError(op: string, path: string, offset: number | null, reason: string, where = 'byte offset'): FileFormatError {
  const at = offset === null ? '' : ` (at ${where} ${offset})`;
  const err = new Error(`${op}: ${path}: ${reason}${at}`) as FileFormatError;
  err.code = 'ERR_FILE_FORMAT';
  err.path = path;
  err.offset = offset;
  return err;
}

/** A non-empty string path, or a TypeError naming the op. @internal */
export function checkPath(op: string, value: unknown, name = 'path'): string {
  if (typeof value !== 'string' || value === '') {
    throw new TypeError(`${op}: expected ${name} to be a non-empty string, got ${show(value)}`);
  }
  return value;
}
