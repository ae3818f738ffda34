/**
 * Where a captured step (`train.captureStep`, lib/train/capture.ts) stands, for the few places
 * that must behave differently inside one. A step's call after its warm-up is recorded once into
 * a CUDA graph and then replayed: anything that waits for the device or reads JavaScript memory
 * inside it would happen once, at the capture, and never at the replays. Those places refuse here
 * on every backend, so that a step written on the CPU (which runs it eagerly) fails the same way
 * it would on a GPU, and the CUDA addon refuses them again natively.
 * @internal
 * @module
 */

/**
 * `'warmup'`: an eager call before the capture (optimizers move their learning rate to the
 * device). `'capture'`: the call being recorded into a graph. `'checked'`: an eager call under
 * the capture's rules (the CPU backend, which has no graphs).
 */
export type CapturePhase = 'warmup' | 'capture' | 'checked';

interface Frame {
  phase: CapturePhase;
  // Host-side effects to repeat at each replay (see eachReplay).
  replay: (() => void)[];
  // The first refusal: thrown again when the call returns, in case it was a promise's rejection
  // (an un-awaited `data()`) that the step function never saw.
  refused: Error | null;
}

let current: Frame | null = null;

/** The phase of the step being called, or null outside any. */
export function capturePhase(): CapturePhase | null {
  return current?.phase ?? null;
}

/**
 * Runs `fn` as a step's call in `phase`, and returns what it returned with the effects it asked
 * to repeat at each replay; throws the first refusal made during the call, even one `fn` caught.
 * Steps do not nest: a step called inside another is refused.
 */
export function runInPhase<T>(phase: CapturePhase, fn: () => T): { result: T; replay: (() => void)[] } {
  if (current) throw captureRefusal('captureStep', 'a step called inside another step');
  const frame: Frame = { phase, replay: [], refused: null };
  current = frame;
  try {
    const result = fn();
    if (frame.refused) throw frame.refused;
    return { result, replay: frame.replay };
  } finally {
    current = null;
  }
}

/** The error of a refusal; `code` is the CUDA addon's for the same refusal. */
export function captureRefusal(op: string, what: string): Error {
  return Object.assign(new Error(`${op}: ${what} cannot be part of a captured step (train.captureStep); ` +
    'do it outside the step function, or pass what it needs in as an input'), { code: 'ERR_CAPTURE_REFUSED' });
}

/** Throws `captureRefusal(op, what)` inside a recorded or checked call; nothing otherwise. */
export function refuseInCapture(op: string, what: string): void {
  if (!current || current.phase === 'warmup') return;
  const err = captureRefusal(op, what);
  current.refused ??= err;
  throw err;
}

/**
 * Runs `effect` (a host-side counter a forward call advances), and, while a step is being
 * recorded, keeps it so that every replay of the step runs it again.
 */
export function eachReplay(effect: () => void): void {
  effect();
  if (current?.phase === 'capture') current.replay.push(effect);
}
