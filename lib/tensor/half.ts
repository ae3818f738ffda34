/**
 * Bit-level conversions between numbers and the two half-precision formats, as the native
 * backends do them (native/common/half.h): float32 → half rounds to nearest, ties to even, keeps
 * NaN a NaN and sends what is too large to infinity (float32 subnormals → bfloat16 give zero);
 * half → number is exact. For the host side
 * of half-precision data: safetensors files, and the tests' references.
 * @internal
 * @module
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bitsOf(v: number): number {
  f32[0] = v;
  return u32[0]!;
}

function floatOf(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/**
 * The bfloat16 bits (the upper 16 bits of a float32, rounded) of `v` rounded to float32 first;
 * float32 subnormals give zero, as on the backends (native/common/half.h).
 */
export function toBFloat16Bits(v: number): number {
  const u = bitsOf(v);
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  if ((u & 0x7f800000) === 0) return (u >>> 16) & 0x8000;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function fromBFloat16Bits(h: number): number {
  return floatOf((h & 0xffff) << 16);
}

/** The IEEE binary16 bits of `v` rounded to float32 first. */
export function toFloat16Bits(v: number): number {
  const u = bitsOf(v);
  const sign = (u >>> 16) & 0x8000;
  const a = (u & 0x7fffffff) >>> 0;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  // 65520, half-way between the largest half (65504) and 2^16, rounds to even: infinity.
  if (a >= 0x477ff000) return sign | 0x7c00;
  if (a >= 0x38800000) {
    let r = a - 0x38000000;
    r += 0xfff + ((r >>> 13) & 1);
    return sign | (r >>> 13);
  }
  // Subnormal: a multiple of 2^-24, rounded to nearest even.
  const q = floatOf(a) * 2 ** 24;
  const fl = Math.floor(q);
  const diff = q - fl;
  const m = diff > 0.5 || (diff === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  return sign | m;
}

export function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : Number.NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
