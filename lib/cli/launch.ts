/**
 * `cudnn-resnet launch`: starts the processes of a data-parallel job on this machine, with
 * torchrun's conventions. Each of the `--nproc` processes runs `script` with RANK, LOCAL_RANK,
 * WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, which `distributed.init()`
 * reads. Several machines: one launcher per machine, each with the same `--nnodes`,
 * `--master-addr` (the machine of node 0) and `--master-port`, and its own `--node-rank`.
 *
 * SIGINT and SIGTERM are forwarded to every process. When one exits with an error or a signal,
 * the launcher stops the others and exits non-zero, naming the rank.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process';

/** What `launch` was asked to run. */
export interface LaunchOptions {
  nproc: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  /** The command each process runs (`process.execPath` and its arguments). */
  command: string[];
  /** Extra variables for every process. */
  env?: Record<string, string>;
  log: (line: string) => void;
}

// How long stopped processes get to exit on SIGTERM before they are killed.
const GRACE_MS = 5000;

/** Runs the processes; resolves to the launcher's exit code. */
export function launch(o: LaunchOptions): Promise<number> {
  const world = o.nproc * o.nnodes;
  return new Promise((resolve) => {
    const children: { rank: number; child: ChildProcess; exited: boolean }[] = [];
    let failure: string | null = null;
    let running = o.nproc;
    let killTimer: NodeJS.Timeout | null = null;
    const stopAll = (signal: NodeJS.Signals) => {
      for (const c of children) if (!c.exited) c.child.kill(signal);
      killTimer ??= setTimeout(() => {
        for (const c of children) if (!c.exited) c.child.kill('SIGKILL');
      }, GRACE_MS);
    };
    const forward = (signal: NodeJS.Signals) => () => {
      failure ??= `stopped by ${signal}`;
      stopAll(signal);
    };
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    for (let local = 0; local < o.nproc; local++) {
      const rank = o.nodeRank * o.nproc + local;
      const child = spawn(o.command[0]!, o.command.slice(1), {
        stdio: 'inherit',
        env: {
          ...process.env, ...o.env,
          RANK: String(rank), LOCAL_RANK: String(local), WORLD_SIZE: String(world), LOCAL_WORLD_SIZE: String(o.nproc),
          GROUP_RANK: String(o.nodeRank), MASTER_ADDR: o.masterAddr, MASTER_PORT: String(o.masterPort),
        },
      });
      const entry = { rank, child, exited: false };
      children.push(entry);
      child.on('error', (err) => {
        failure ??= `rank ${rank} could not start: ${err.message}`;
        entry.exited = true;
        stopAll('SIGTERM');
      });
      child.on('exit', (code, signal) => {
        entry.exited = true;
        running--;
        // Every failed rank is named: which one failed first is not always the first exit seen
        // (a peer may notice the loss and exit before the launcher hears of the rank that died).
        if (code !== 0 || signal) {
          const first = failure === null;
          const what = `rank ${rank} (local rank ${local}) ${signal ? `was killed by ${signal}` : `exited with code ${code}`}`;
          failure ??= what;
          o.log(`cudnn-resnet launch: ${what}${first ? '; stopping the other ranks' : ''}`);
          if (first) stopAll('SIGTERM');
        }
        if (running === 0) {
          if (killTimer) clearTimeout(killTimer);
          process.off('SIGINT', onInt);
          process.off('SIGTERM', onTerm);
          resolve(failure === null ? 0 : 1);
        }
      });
    }
  });
}
