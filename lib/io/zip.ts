/**
 * A reader of ZIP archives (PKWARE APPNOTE 6.3), enough for PyTorch's checkpoints: `torch.save`
 * since 1.6 writes a ZIP of stored (uncompressed) entries, ZIP64 where sizes or offsets pass
 * 4 GiB. Stored and deflated entries are read; encryption, multi-disk archives and other
 * compression methods are refused.
 *
 * Hostile archives: every size and offset an archive claims is checked against the file's size
 * before anything is allocated for it, the central directory must lie inside the file, each
 * entry's data must end before the central directory starts, a deflated entry may claim at most
 * deflate's maximum ratio (1032:1) and is inflated with that bound, and every entry read is
 * checked against its CRC-32. Entries are kept in a `Map`, so no name can reach an object's
 * prototype.
 * @internal
 * @module
 */
import type { FileHandle } from 'node:fs/promises';
import { crc32, inflateRawSync } from 'node:zlib';
import { fileFormatError } from './file-error.js';
import { readExactly } from './read-at.js';

/** One file of the archive, as its central directory describes it. @internal */
export interface ZipEntry {
  name: string;
  /** 0: stored, 8: deflated. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** Where the entry's local header starts. */
  headerOffset: number;
}

const EOCD_SIG = 0x06054b50;
const EOCD64_SIG = 0x06064b50;
const LOCATOR64_SIG = 0x07064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_BYTES = 22;
const LOCATOR64_BYTES = 20;
const EOCD64_BYTES = 56;
const CENTRAL_BYTES = 46;
const LOCAL_BYTES = 30;
/** The end record's comment is at most 65,535 bytes, so the record starts within this many of the end. */
const EOCD_SEARCH = EOCD_BYTES + 0xffff;
/** Deflate's best compression ratio is about 1032:1; an entry that claims more is corrupt. */
const MAX_DEFLATE_RATIO = 1032;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A little-endian u64 as a number, or null past 2^53 (no real file is that large). */
function u64(v: DataView, at: number): number | null {
  const n = v.getBigUint64(at, true);
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(n);
}

/**
 * An open archive: the central directory is read and checked at `open`; `read` returns one
 * entry's bytes, checked against its CRC. The caller owns the file handle. @internal
 */
export class ZipReader {
  readonly entries: ReadonlyMap<string, ZipEntry>;
  readonly #op: string;
  readonly #path: string;
  readonly #fh: FileHandle;
  readonly #size: number;
  /** Where the central directory starts: every entry's data must end before it. */
  readonly #dataEnd: number;

  private constructor(op: string, path: string, fh: FileHandle, size: number, dataEnd: number, entries: Map<string, ZipEntry>) {
    this.#op = op;
    this.#path = path;
    this.#fh = fh;
    this.#size = size;
    this.#dataEnd = dataEnd;
    this.entries = entries;
  }

  /** Reads and checks the central directory of the archive open as `fh`. */
  static async open(op: string, path: string, fh: FileHandle): Promise<ZipReader> {
    const size = (await fh.stat()).size;
    const fail = (offset: number | null, reason: string) => fileFormatError(op, path, offset, reason);
    const tailStart = Math.max(0, size - EOCD_SEARCH);
    const tail = await readExactly(op, path, fh, tailStart, size - tailStart);
    const tv = view(tail);
    let eocd = -1;
    for (let i = tail.length - EOCD_BYTES; i >= 0; i--) {
      // The comment length must reach the end of the file exactly, which rules out the
      // signature's bytes appearing by chance inside a comment or the last entry's data.
      if (tv.getUint32(i, true) === EOCD_SIG && i + EOCD_BYTES + tv.getUint16(i + 20, true) === tail.length) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw fail(null, `not a ZIP archive (no end-of-central-directory record in its last ${Math.min(size, EOCD_SEARCH)} bytes)`);
    const eocdAt = tailStart + eocd;
    if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0) throw fail(eocdAt, 'multi-disk ZIP archives are not supported');
    let count: number | null = tv.getUint16(eocd + 10, true);
    let cdSize: number | null = tv.getUint32(eocd + 12, true);
    let cdOffset: number | null = tv.getUint32(eocd + 16, true);
    let cdEnd = eocdAt;
    if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
      // ZIP64: a locator right before the end record points at the ZIP64 end record.
      const locAt = eocdAt - LOCATOR64_BYTES;
      if (locAt < 0) throw fail(eocdAt, 'the end record asks for ZIP64 but there is no room for its locator');
      const loc = view(await readExactly(op, path, fh, locAt, LOCATOR64_BYTES));
      if (loc.getUint32(0, true) !== LOCATOR64_SIG) throw fail(locAt, 'the end record asks for ZIP64 but the ZIP64 locator is missing');
      const recAt = u64(loc, 8);
      if (recAt === null || recAt + EOCD64_BYTES > locAt) throw fail(locAt, `the ZIP64 end record's offset ${loc.getBigUint64(8, true)} is not before its locator`);
      const rec = view(await readExactly(op, path, fh, recAt, EOCD64_BYTES));
      if (rec.getUint32(0, true) !== EOCD64_SIG) throw fail(recAt, 'no ZIP64 end-of-central-directory record where the locator points');
      count = u64(rec, 32);
      cdSize = u64(rec, 40);
      cdOffset = u64(rec, 48);
      cdEnd = recAt;
    }
    if (count === null || cdSize === null || cdOffset === null || cdOffset + cdSize > cdEnd) {
      throw fail(eocdAt, `the central directory (offset ${cdOffset ?? 'huge'}, ${cdSize ?? 'huge'} bytes) does not end before the end record at ${cdEnd}`);
    }
    if (count * CENTRAL_BYTES > cdSize) throw fail(eocdAt, `${count} entries cannot fit in a ${cdSize}-byte central directory`);
    const cd = await readExactly(op, path, fh, cdOffset, cdSize);
    const entries = parseCentral(cd, cdOffset, count, fail);
    return new ZipReader(op, path, fh, size, cdOffset, entries);
  }

  /**
   * The bytes of `entry`, inflated if deflated, checked against its size and CRC-32, and `at`,
   * where its (possibly compressed) data starts in the file.
   */
  async read(entry: ZipEntry): Promise<{ data: Uint8Array; at: number }> {
    const fail = (offset: number, reason: string) => fileFormatError(this.#op, this.#path, offset, `entry '${entry.name}': ${reason}`);
    const at = entry.headerOffset;
    if (at + LOCAL_BYTES > this.#dataEnd) throw fail(at, 'its local header runs into the central directory');
    const local = view(await readExactly(this.#op, this.#path, this.#fh, at, LOCAL_BYTES));
    if (local.getUint32(0, true) !== LOCAL_SIG) throw fail(at, 'no local file header where the central directory points');
    // The local header's name and extra field may differ in length from the central
    // directory's (PyTorch pads the local extra field to align the data).
    const dataAt = at + LOCAL_BYTES + local.getUint16(26, true) + local.getUint16(28, true);
    if (dataAt + entry.compressedSize > this.#dataEnd) {
      throw fail(at, `its ${entry.compressedSize} bytes of data at ${dataAt} run past the start of the central directory (${this.#dataEnd}; the file has ${this.#size} bytes)`);
    }
    const raw = await readExactly(this.#op, this.#path, this.#fh, dataAt, entry.compressedSize);
    let data = raw;
    if (entry.method === 8) {
      try {
        data = new Uint8Array(inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) }));
      } catch (err) {
        throw fail(dataAt, `its deflated data does not inflate to the ${entry.size} bytes it claims (${(err as Error).message})`);
      }
      if (data.length !== entry.size) throw fail(dataAt, `inflates to ${data.length} bytes, not the ${entry.size} it claims`);
    }
    if ((crc32(data) >>> 0) !== entry.crc32) throw fail(dataAt, 'CRC-32 mismatch (the archive is corrupt or was changed)');
    return { data, at: dataAt };
  }
}

type Fail = (offset: number | null, reason: string) => Error;

function parseCentral(cd: Uint8Array, cdOffset: number, count: number, fail: Fail): Map<string, ZipEntry> {
  const v = view(cd);
  const entries = new Map<string, ZipEntry>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const latin1 = new TextDecoder('latin1');
  let p = 0;
  for (let i = 0; i < count; i++) {
    const at = cdOffset + p;
    if (p + CENTRAL_BYTES > cd.length || v.getUint32(p, true) !== CENTRAL_SIG) throw fail(at, `central directory entry ${i} of ${count} is missing or malformed`);
    const flags = v.getUint16(p + 8, true);
    const method = v.getUint16(p + 10, true);
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true);
    const commentLen = v.getUint16(p + 32, true);
    const next = p + CENTRAL_BYTES + nameLen + extraLen + commentLen;
    if (next > cd.length) throw fail(at, `central directory entry ${i} runs past the end of the directory`);
    const nameBytes = cd.subarray(p + CENTRAL_BYTES, p + CENTRAL_BYTES + nameLen);
    let name: string;
    try {
      // Bit 11: the name is UTF-8; otherwise it is code page 437, whose ASCII part is all a
      // PyTorch archive uses (latin1 keeps every other byte distinct).
      name = flags & 0x800 ? utf8.decode(nameBytes) : latin1.decode(nameBytes);
    } catch {
      throw fail(at + CENTRAL_BYTES, `entry ${i}'s name is not valid UTF-8`);
    }
    if (flags & 0x1) throw fail(at, `entry '${name}' is encrypted`);
    if (method !== 0 && method !== 8) throw fail(at, `entry '${name}' uses compression method ${method} (only stored and deflated entries are supported)`);
    let compressedSize: number | null = v.getUint32(p + 20, true);
    let size: number | null = v.getUint32(p + 24, true);
    let headerOffset: number | null = v.getUint32(p + 42, true);
    if (compressedSize === U32_MAX || size === U32_MAX || headerOffset === U32_MAX) {
      // The ZIP64 extra field holds, in this order, only the values whose 32-bit field is full.
      const z = zip64Extra(cd.subarray(p + CENTRAL_BYTES + nameLen, p + CENTRAL_BYTES + nameLen + extraLen));
      if (z === null) throw fail(at, `entry '${name}' has 32-bit fields marked ZIP64 but no ZIP64 extra field`);
      let k = 0;
      const take = (): number | null => {
        if (k + 8 > z.length) return null;
        k += 8;
        return u64(view(z), k - 8);
      };
      if (size === U32_MAX) size = take();
      if (compressedSize === U32_MAX) compressedSize = take();
      if (headerOffset === U32_MAX) headerOffset = take();
    }
    const valid = (n: number | null): n is number => n !== null && n <= cdOffset;
    if (!valid(compressedSize) || !valid(headerOffset) || size === null) {
      throw fail(at, `entry '${name}' claims sizes or an offset beyond the archive's data (compressed ${compressedSize}, size ${size}, offset ${headerOffset})`);
    }
    if (method === 0 && size !== compressedSize) throw fail(at, `stored entry '${name}' claims ${size} bytes but holds ${compressedSize}`);
    if (method === 8 && size > Math.max(1, compressedSize) * MAX_DEFLATE_RATIO) {
      throw fail(at, `deflated entry '${name}' claims ${size} bytes from ${compressedSize}, beyond deflate's maximum ratio`);
    }
    if (entries.has(name)) throw fail(at, `entry '${name}' appears twice`);
    entries.set(name, { name, method, compressedSize, size, crc32: v.getUint32(p + 16, true), headerOffset });
    p = next;
  }
  return entries;
}

/** The data of the ZIP64 extended-information extra field (header id 1), or null. */
function zip64Extra(extra: Uint8Array): Uint8Array | null {
  const v = view(extra);
  for (let p = 0; p + 4 <= extra.length;) {
    const id = v.getUint16(p, true);
    const len = v.getUint16(p + 2, true);
    if (p + 4 + len > extra.length) return null;
    if (id === 1) return extra.subarray(p + 4, p + 4 + len);
    p += 4 + len;
  }
  return null;
}
