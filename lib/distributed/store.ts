/**
 * The rendezvous: a small key-value store on rank 0's `MASTER_PORT`, like PyTorch's TCPStore.
 * Every rank (rank 0 too) connects to it over TCP, says who it is (`hello`: rank and world
 * size, checked against rank 0's), publishes what the others need to reach it (`set`) and
 * waits for theirs (`get`, answered once the key exists). Messages are one JSON object per line.
 *
 * After the group is up the connections stay open (unref'd: they keep no process alive) as a
 * liveness signal: when a rank's connection closes without a `bye`, the store tells every other
 * rank (`lost`), which aborts its collectives naming that rank; when the store itself goes away,
 * rank 0 is the one that left.
 * @internal
 * @module
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

interface Request {
  id: number;
  op: 'hello' | 'set' | 'get' | 'bye';
  rank?: number;
  worldSize?: number;
  key?: string;
  value?: string;
}

type Message = { id: number; value?: string; error?: string } | { event: 'lost' | 'abort'; reason: string };

// A line longer than this is not ours: the largest value is Gloo's addresses of one rank.
const MAX_LINE = 1 << 20;

function lines(socket: Socket, onLine: (line: string) => void, onBad: (why: string) => void): void {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      onLine(line);
    }
    if (buffered.length > MAX_LINE) onBad('a message longer than 1 MiB');
  });
}

function send(socket: Socket, message: Message | Request): void {
  if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`);
}

/** Rank 0's side: the store itself. */
export class StoreServer {
  readonly #server: Server;
  readonly #worldSize: number;
  readonly #values = new Map<string, string>();
  readonly #waiting = new Map<string, { socket: Socket; id: number }[]>();
  readonly #ranks = new Map<Socket, number>();
  readonly #left = new Set<number>();
  #closing = false;
  // Why the job cannot form, once a rank was refused: the ranks that said hello before were told
  // (`abort`); those that say it later, rank 0 among them, get it as their answer.
  #aborted: string | null = null;

  private constructor(server: Server, worldSize: number) {
    this.#server = server;
    this.#worldSize = worldSize;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** Listens on `host:port`; rejects with an error a user can act on (port in use, address not local). */
  static listen(host: string, port: number, worldSize: number): Promise<StoreServer> {
    return new Promise((resolve, reject) => {
      const server = createServer();
      server.once('error', (err: NodeJS.ErrnoException) => {
        const why =
          err.code === 'EADDRINUSE' ? `port ${port} is already in use on ${host} (another job, or a previous one still running? pick another MASTER_PORT)` :
          err.code === 'EADDRNOTAVAIL' ? `${host} is not an address of this machine, which runs rank 0 (MASTER_ADDR must name rank 0's machine)` :
          err.code === 'EACCES' ? `port ${port} needs privileges (use a port above 1023)` :
          `${err.code ?? ''} ${err.message}`;
        reject(Object.assign(new Error(`distributed.init: rank 0 cannot listen for the rendezvous on ${host}:${port}: ${why}`), { code: 'ERR_DIST_RENDEZVOUS' }));
      });
      server.listen({ host, port, exclusive: true }, () => {
        server.unref();
        resolve(new StoreServer(server, worldSize));
      });
    });
  }

  #accept(socket: Socket): void {
    socket.unref();
    socket.setNoDelay(true);
    lines(socket, (line) => this.#handle(socket, line), () => socket.destroy());
    socket.on('error', () => {});
    socket.on('close', () => {
      const rank = this.#ranks.get(socket);
      this.#ranks.delete(socket);
      for (const list of this.#waiting.values()) {
        const i = list.findIndex((w) => w.socket === socket);
        if (i >= 0) list.splice(i, 1);
      }
      if (rank !== undefined && !this.#left.has(rank) && !this.#closing) {
        this.#broadcast({ event: 'lost', reason: `rank ${rank} left: its connection to the rendezvous on rank 0 closed (the process exited, was killed or crashed)` });
      }
    });
  }

  #handle(socket: Socket, line: string): void {
    let req: Request;
    try {
      req = JSON.parse(line) as Request;
    } catch {
      socket.destroy();
      return;
    }
    if (typeof req !== 'object' || req === null || typeof req.id !== 'number') {
      socket.destroy();
      return;
    }
    const reply = (m: { value?: string; error?: string }) => send(socket, { id: req.id, ...m });
    switch (req.op) {
      case 'hello': {
        const { rank, worldSize } = req;
        if (this.#aborted !== null) {
          reply({ error: this.#aborted });
          return;
        }
        if (worldSize !== this.#worldSize) {
          const reason = `world size mismatch: rank ${rank} was started with a world size of ${worldSize}, rank 0 with ${this.#worldSize}`;
          this.#aborted = reason;
          reply({ error: reason });
          this.#broadcast({ event: 'abort', reason });
          return;
        }
        if (typeof rank !== 'number' || !Number.isInteger(rank) || rank < 0 || rank >= this.#worldSize) {
          reply({ error: `rank ${rank} is outside [0, ${this.#worldSize})` });
          return;
        }
        if ([...this.#ranks.values()].includes(rank)) {
          const reason = `two processes claim rank ${rank} (RANK set twice, or a previous job still running on MASTER_PORT?)`;
          this.#aborted = reason;
          reply({ error: reason });
          this.#broadcast({ event: 'abort', reason });
          return;
        }
        this.#ranks.set(socket, rank);
        reply({});
        return;
      }
      case 'set': {
        if (typeof req.key !== 'string' || typeof req.value !== 'string') return void socket.destroy();
        this.#values.set(req.key, req.value);
        for (const w of this.#waiting.get(req.key) ?? []) send(w.socket, { id: w.id, value: req.value });
        this.#waiting.delete(req.key);
        reply({});
        return;
      }
      case 'get': {
        if (typeof req.key !== 'string') return void socket.destroy();
        const value = this.#values.get(req.key);
        if (value !== undefined) reply({ value });
        else this.#waiting.set(req.key, [...(this.#waiting.get(req.key) ?? []), { socket, id: req.id }]);
        return;
      }
      case 'bye': {
        const rank = this.#ranks.get(socket);
        if (rank !== undefined) this.#left.add(rank);
        reply({});
        return;
      }
      default:
        socket.destroy();
    }
  }

  #broadcast(message: Message): void {
    for (const socket of this.#ranks.keys()) send(socket, message);
  }

  /** Closes once every rank's connection has closed (each said `bye`), or at `deadline`. */
  async closeWhenLeft(deadline: number): Promise<void> {
    while (this.#ranks.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.close();
  }

  /** Stops listening and drops every connection. */
  close(): void {
    this.#closing = true;
    this.#server.close();
    for (const socket of this.#ranks.keys()) socket.destroy();
  }
}

/** A rank's connection to the store. */
export class StoreClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, { resolve: (v: string | undefined) => void; reject: (e: Error) => void }>();
  #nextId = 0;
  #failure: Error | null = null;
  #leaving = false;
  /** Called once when another rank, or the store, is gone for good. */
  onLost: ((reason: string) => void) | null = null;

  private constructor(socket: Socket, where: string) {
    this.#socket = socket;
    socket.setNoDelay(true);
    lines(socket, (line) => this.#handle(line), () => this.#fail(`the rendezvous at ${where} sent a malformed message`));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (!this.#leaving) this.#fail(`rank 0 left: the rendezvous at ${where} closed (rank 0 exited, was killed or crashed)`);
    });
  }

  /**
   * Connects to the store at `host:port`, retrying while nothing listens there yet (rank 0 may
   * start later) until `deadline` (a Date.now() value).
   */
  static async connect(host: string, port: number, deadline: number): Promise<StoreClient> {
    const where = `${host}:${port}`;
    let last = 'no answer';
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw Object.assign(
          new Error(`distributed.init: could not reach the rendezvous at ${where} (MASTER_ADDR:MASTER_PORT) before the timeout: ${last}. Is rank 0 running, and is the address right?`),
          { code: 'ERR_DIST_RENDEZVOUS' },
        );
      }
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect({ host, port });
          const timer = setTimeout(() => {
            s.destroy();
            reject(Object.assign(new Error('connection attempt timed out'), { code: 'ETIMEDOUT' }));
          }, Math.min(remaining, 5000));
          s.once('connect', () => {
            clearTimeout(timer);
            resolve(s);
          });
          s.once('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
        });
        return new StoreClient(socket, where);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') {
          throw Object.assign(new Error(`distributed.init: MASTER_ADDR '${host}' does not resolve to an address (${e.code})`), { code: 'ERR_DIST_RENDEZVOUS' });
        }
        last = `${e.code ?? ''} ${e.message}`.trim();
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** The local address the connection to rank 0 uses: where the other ranks can reach this one. */
  get localAddress(): string {
    const a = this.#socket.localAddress ?? '127.0.0.1';
    return a.startsWith('::ffff:') ? a.slice(7) : a;
  }

  #handle(line: string): void {
    let m: Message;
    try {
      m = JSON.parse(line) as Message;
    } catch {
      this.#fail('the rendezvous sent a malformed message');
      return;
    }
    if ('event' in m) {
      this.#fail(m.reason);
      return;
    }
    const p = this.#pending.get(m.id);
    if (!p) return;
    this.#pending.delete(m.id);
    if (m.error !== undefined) p.reject(Object.assign(new Error(`distributed.init: ${m.error}`), { code: 'ERR_DIST_RENDEZVOUS' }));
    else p.resolve(m.value);
  }

  #fail(reason: string): void {
    if (this.#failure) return;
    this.#failure = Object.assign(new Error(`distributed: ${reason}`), { code: 'ERR_DIST_PEER_LOST' });
    for (const p of this.#pending.values()) p.reject(this.#failure);
    this.#pending.clear();
    this.#socket.destroy();
    this.onLost?.(reason);
  }

  #request(req: Omit<Request, 'id'>, deadline: number, what: string): Promise<string | undefined> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(Object.assign(new Error(`distributed.init: timed out waiting for ${what}`), { code: 'ERR_DIST_TIMEOUT' }));
      }, Math.max(0, deadline - Date.now()));
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      send(this.#socket, { id, ...req });
    });
  }

  async hello(rank: number, worldSize: number, deadline: number): Promise<void> {
    await this.#request({ op: 'hello', rank, worldSize }, deadline, 'rank 0 to answer');
  }

  async set(key: string, value: Uint8Array, deadline: number): Promise<void> {
    await this.#request({ op: 'set', key, value: Buffer.from(value).toString('base64') }, deadline, `rank 0 to store '${key}'`);
  }

  async get(key: string, deadline: number, what: string): Promise<Uint8Array> {
    const v = await this.#request({ op: 'get', key }, deadline, what);
    return new Uint8Array(Buffer.from(v ?? '', 'base64'));
  }

  /** Keeps the connection from holding the process open once the group is up. */
  unref(): void {
    this.#socket.unref();
  }

  /** Says goodbye (so that closing is not a loss) and closes. */
  async leave(deadline: number): Promise<void> {
    try {
      await this.#request({ op: 'bye' }, deadline, 'rank 0 to acknowledge leaving');
    } catch {
      // Leaving a store that is already gone is what was asked for.
    }
    this.#leaving = true;
    this.#socket.destroy();
  }
}
