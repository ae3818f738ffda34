/**
 * Progress reporting for training: a redrawn bar with images/s and ETA on a terminal, plain
 * lines (one every few seconds) otherwise, so logs stay readable.
 * @module
 */

export interface ProgressState {
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  images: number;
  seconds: number;
  loss: number;
  lr: number;
}

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}

/** Writes progress to a stream; `update` is cheap to call every step. */
export class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  #lastPlain = 0;

  constructor(out: NodeJS.WriteStream = process.stderr) {
    this.#out = out;
    this.#tty = Boolean(out.isTTY);
  }

  update(st: ProgressState, etaSeconds: number): void {
    const rate = st.seconds > 0 ? st.images / st.seconds : 0;
    const text = `epoch ${st.epoch + 1}/${st.epochs} step ${st.step}/${st.steps} loss ${st.loss.toFixed(4)} lr ${st.lr.toPrecision(3)} ` +
      `${rate.toFixed(0)} img/s ETA ${duration(etaSeconds)}`;
    if (this.#tty) {
      const width = 24;
      const filled = Math.round((width * st.step) / Math.max(1, st.steps));
      this.#out.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
    } else if (st.seconds - this.#lastPlain >= 10 || st.step === st.steps) {
      this.#lastPlain = st.seconds;
      this.#out.write(`${text}\n`);
    }
  }

  /** Ends the bar's line and prints `line`. */
  line(line: string): void {
    if (this.#tty) this.#out.write('\r\x1b[K');
    this.#out.write(`${line}\n`);
  }
}
