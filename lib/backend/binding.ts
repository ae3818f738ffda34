/**
 * The one TypeScript description of the native surface. Both addons (`cudnn_resnet_cpu.node`,
 * `cudnn_resnet_cuda.node`) export exactly these functions with the same meaning; everything
 * above `lib/backend` talks to this interface, never to `require('*.node')`.
 *
 * Conventions:
 * - Buffers are opaque handles. Their logical layout is NCHW (shapes as in PyTorch); the
 *   physical layout is the backend's and never visible here.
 * - Every op returns at once: it allocates its outputs and enqueues the work on the backend's
 *   ordered queue. Only `download`, `downloadSync`, `sync` and `syncBlocking` wait.
 * - Arguments are validated in TypeScript before they get here; the native side re-checks only
 *   what it needs so that no value can crash the process.
 * - Saved statistics (batch norm) and workspaces (max pooling) are opaque buffers whose meaning
 *   belongs to the backend that made them: pass them back to the same backend's backward op.
 * @internal
 * @module
 */

/** An opaque handle to backend memory. */
export interface NativeBuffer {
  /** Bytes allocated (a blocked layout may pad). 0 once released. */
  readonly bytes: number;
  readonly released: boolean;
}

export type NativeDType = 'float32' | 'int32' | 'bfloat16' | 'float16';
export type Pair = [number, number];

export interface NativeInfo {
  backend: 'cpu' | 'cuda';
  available: boolean;
  versions: Record<string, string>;
  [key: string]: unknown;
}

export interface NativeMemory {
  buffers: number;
  bytes: number;
  peakBytes: number;
  /** 0: no limit. */
  limitBytes: number;
  pendingOps: number;
}

/** What `stopProfile` returns: worker time per op name since `startProfile`. */
export interface NativeProfile {
  /** From `startProfile` to `stopProfile`. */
  wallMs: number;
  /** Time the worker spent running tasks (the sum of `ops[].totalMs`). */
  busyMs: number;
  /**
   * One entry per op name (the task's description up to its first space), or per description
   * with the input shapes when started `byShape`, sorted by name.
   */
  ops: { op: string; calls: number; totalMs: number }[];
}

/** A started collective: its ticket for `collectiveWait` and its outputs (see {@link Binding.allReduce}). */
export interface StartedCollective {
  ticket: number;
  outputs: NativeBuffer[];
}

export interface Binding {
  info(): NativeInfo;
  memory(): NativeMemory;
  /**
   * Starts recording the wall time of every task the worker runs, per op name, or with
   * `byShape` per op name and input shapes (resets the totals). CUDA: each task then waits for
   * the GPU work it launched, so times are execution times and the stream runs serialized.
   */
  startProfile(byShape?: boolean): void;
  /** Stops recording and returns the totals. */
  stopProfile(): NativeProfile;
  /** Resolves once every op enqueued before it has run; rejects with the first failure among them. */
  sync(): Promise<void>;
  syncBlocking(): void;
  /**
   * Bytes of the process's C heap in use (glibc mallinfo2: allocated and not freed, by anyone,
   * including the caching allocator's idle blocks); -1 where unknown. For leak tests.
   */
  heapInUse(): number;
  /** Caps the bytes live buffers may hold together (0: no cap); see `Storage::SetLimit`. */
  setMemoryLimit(bytes: number): void;
  /**
   * Stops the backend's worker after the op it is running and drops the ops still queued; ops
   * enqueued afterwards throw (`ERR_SHUT_DOWN`). Called once, when the process exits.
   */
  shutdown(): void;
  /** Frees the memory the backend's caching allocator holds for reuse. */
  emptyCache(): void;
  /** Bytes held by the caching allocator for reuse (not counted in `memory().bytes`). */
  cachedBytes(): number;
  /** Limits the threads the backend's worker uses (CPU: OpenMP threads; CUDA: checked, no effect). */
  setNumThreads(n: number): void;
  /**
   * Lets float32 convolutions use TF32 tensor cores (CUDA; on by default, as in PyTorch;
   * `CUDNN_RESNET_TF32=0` starts with it off). Applies to convolutions enqueued afterwards. The
   * CPU has no TF32 and accepts the setting without effect.
   */
  setTf32(enabled: boolean): void;
  /**
   * Binds this addon instance to device `index` (CUDA's numbering, after `CUDA_VISIBLE_DEVICES`)
   * before its first op; info() then describes that device. Another GPU is served by another
   * instance of the CUDA addon. The CPU backend has device 0 only.
   */
  useDevice(index: number): void;

  /**
   * A buffer of `values`: int32 from an Int32Array; from a Float32Array float32, or `dtype`
   * 'bfloat16' / 'float16' (converted, rounding to nearest even).
   */
  upload(values: Float32Array | Int32Array, shape: number[], dtype?: NativeDType): NativeBuffer;
  fill(shape: number[], value: number, dtype: NativeDType): NativeBuffer;
  zerosLike(like: NativeBuffer): NativeBuffer;
  /** The values in row-major order: an Int32Array for int32, a Float32Array for the floating types. */
  download(buf: NativeBuffer): Promise<Float32Array | Int32Array>;
  downloadSync(buf: NativeBuffer): Float32Array | Int32Array;
  /** A new buffer holding the same values in row-major order under another shape. */
  reshape(buf: NativeBuffer, shape: number[]): NativeBuffer;
  /**
   * The values of a floating buffer in another floating type (round to nearest even), in the
   * physical layout the backend keeps that type in (the CPU's: the same; cuda's: 4-D half
   * precision channels-last, float32 plain); the buffer itself when it has that type already.
   */
  cast(buf: NativeBuffer, dtype: NativeDType): NativeBuffer;
  /** Drops this handle's reference; the memory goes when no queued op needs it either. */
  release(buf: NativeBuffer): void;
  /** A second handle to the same memory. */
  share(buf: NativeBuffer): NativeBuffer;
  shapeOf(buf: NativeBuffer): number[];

  conv2dForward(x: NativeBuffer, w: NativeBuffer, bias: NativeBuffer | null, stride: Pair, padding: Pair,
    dilation: Pair, groups: number): NativeBuffer;
  conv2dBackwardData(dy: NativeBuffer, w: NativeBuffer, xShape: number[], stride: Pair, padding: Pair,
    dilation: Pair, groups: number): NativeBuffer;
  /** Returns [dw (plain OIHW), dbias | null]. */
  conv2dBackwardWeights(x: NativeBuffer, dy: NativeBuffer, wShape: number[], withBias: boolean, stride: Pair,
    padding: Pair, dilation: Pair, groups: number): [NativeBuffer, NativeBuffer | null];

  /**
   * Training-mode batch norm over [N, C, H, W] with a fused tail: y = bn(x), relu(bn(x)) with
   * `relu`, relu(bn(x) + residual) with a residual (of x's shape and dtype) too. Normalizes with
   * the biased batch variance, and updates `runningMean`/`runningVar` in place (when given) with
   * `momentum` and the unbiased variance. x, residual and y share a floating dtype; weight, bias
   * and the statistics are float32. Returns [y, saved1, saved2, saved3 | null]: opaque saved state
   * for `batchNormBackward` (saved3: what the backend needs for the tail, if anything).
   */
  batchNormForwardTraining(x: NativeBuffer, weight: NativeBuffer, bias: NativeBuffer,
    runningMean: NativeBuffer | null, runningVar: NativeBuffer | null, momentum: number,
    eps: number, residual: NativeBuffer | null, relu: boolean): [NativeBuffer, NativeBuffer, NativeBuffer, NativeBuffer | null];
  /** Inference-mode batch norm with the given statistics, with the same tails. */
  batchNormForwardInference(x: NativeBuffer, weight: NativeBuffer, bias: NativeBuffer, mean: NativeBuffer,
    variance: NativeBuffer, eps: number, residual: NativeBuffer | null, relu: boolean): NativeBuffer;
  /**
   * The backward of a training forward with the same tail: `y` is that forward's output (needed
   * with `relu`), saved1–3 what it returned. Returns [dx, dweight, dbias (plain [C]), dresidual |
   * null (with a residual)].
   */
  batchNormBackward(x: NativeBuffer, y: NativeBuffer | null, dy: NativeBuffer, weight: NativeBuffer,
    saved1: NativeBuffer, saved2: NativeBuffer, saved3: NativeBuffer | null, eps: number, withResidual: boolean,
    relu: boolean): [NativeBuffer, NativeBuffer, NativeBuffer, NativeBuffer | null];

  relu(x: NativeBuffer): NativeBuffer;
  /** dx = dy · (y > 0), from the forward output y. */
  reluBackward(y: NativeBuffer, dy: NativeBuffer): NativeBuffer;
  /** alpha · x, elementwise (its own backward with the same alpha). */
  scale(x: NativeBuffer, alpha: number): NativeBuffer;
  add(a: NativeBuffer, b: NativeBuffer): NativeBuffer;
  /** relu(a + b) in one kernel. */
  addRelu(a: NativeBuffer, b: NativeBuffer): NativeBuffer;

  /** Returns [y, workspace]. */
  maxPool2dForward(x: NativeBuffer, kernel: Pair, stride: Pair, padding: Pair): [NativeBuffer, NativeBuffer];
  maxPool2dBackward(dy: NativeBuffer, workspace: NativeBuffer, xShape: number[], kernel: Pair, stride: Pair,
    padding: Pair): NativeBuffer;
  /** Average pooling; padded zeros count in the divisor (PyTorch's count_include_pad = true). */
  avgPool2dForward(x: NativeBuffer, kernel: Pair, stride: Pair, padding: Pair): NativeBuffer;
  avgPool2dBackward(dy: NativeBuffer, xShape: number[], kernel: Pair, stride: Pair, padding: Pair): NativeBuffer;

  /** y = x·wᵀ + b with x [N, in], w [out, in], b [out] or null. */
  linearForward(x: NativeBuffer, w: NativeBuffer, bias: NativeBuffer | null): NativeBuffer;
  /** Returns [dx, dw, dbias | null]. */
  linearBackward(x: NativeBuffer, w: NativeBuffer, dy: NativeBuffer, withBias: boolean):
    [NativeBuffer, NativeBuffer, NativeBuffer | null];

  /**
   * Mean softmax cross-entropy of logits [N, K] against int32 labels [N], with label smoothing.
   * Returns [loss (shape []), probabilities [N, K]]. A label outside [0, K) fails the op.
   */
  softmaxCrossEntropyForward(logits: NativeBuffer, labels: NativeBuffer, labelSmoothing: number):
    [NativeBuffer, NativeBuffer];
  /** dlogits = (p - q) · dloss / N, with dloss a buffer of shape []. */
  softmaxCrossEntropyBackward(probs: NativeBuffer, labels: NativeBuffer, labelSmoothing: number,
    dloss: NativeBuffer): NativeBuffer;

  /**
   * How many values of these floating buffers are infinite or NaN, as a float32 buffer of shape
   * [] (the gradient scaler's overflow check; CPU only for now).
   */
  countNonFinite(buffers: NativeBuffer[]): NativeBuffer;

  /**
   * One SGD step over every parameter, PyTorch's rule: g = grad + wd·p; buf = momentum·buf + g
   * (buf = g on the first step); g = nesterov ? g + momentum·buf : buf; p -= lr·g.
   * Parameters, gradients and momentum buffers must have equal shapes pairwise; `momentumBuffers`
   * is empty when momentum is 0. `lrBuffer`, a float32 buffer of one value, replaces `lr` with
   * the value it holds when the step runs (a captured step's schedule).
   */
  sgdStep(params: NativeBuffer[], grads: NativeBuffer[], momentumBuffers: NativeBuffer[], lr: number,
    momentum: number, weightDecay: number, nesterov: boolean, firstStep: boolean, lrBuffer?: NativeBuffer | null): void;
  /** Enqueues a copy of src's values into dst (same shape and dtype); dst keeps its memory. */
  copyInto(dst: NativeBuffer, src: NativeBuffer): void;

  /**
   * Captured steps (lib/train/capture.ts): everything enqueued between `captureBegin` and
   * `captureEnd` is recorded into a CUDA graph instead of running, and `graphLaunch` replays it.
   * Sync points, uploads and collectives are refused in between (ERR_CAPTURE_REFUSED), and so
   * is a cuDNN plan for shapes not seen before; `captureEnd` then throws what was refused. The
   * graph keeps every buffer it uses alive until `graphRelease`. The CPU backend has no graphs:
   * `captureBegin` and `graphLaunch` throw ERR_UNSUPPORTED there.
   * Returns the id of the graph the capture makes.
   */
  captureBegin(): number;
  /** Ends the capture; the graph has not run yet (launch it once for this step's values). */
  captureEnd(): void;
  /** Discards the open capture, if any. */
  captureAbort(): void;
  /** Enqueues a replay of graph `id`. */
  graphLaunch(id: number): void;
  /** Drops graph `id` once its enqueued replays have run; an unknown id is harmless. */
  graphRelease(id: number): void;
  /**
   * Never waits: `ready` once the worker has instantiated the graph; `failure` once its capture
   * failed (also reported at the next sync point); neither while the capture's end is queued.
   */
  graphStatus(id: number): { ready: boolean; failure: string | null };

  /**
   * Synchronized batch norm's local parts (lib/ops/sync-batch-norm.ts runs the collectives
   * between them; float32, CPU only so far: cuda refuses with ERR_UNSUPPORTED). Statistics of x
   * [N, C, H, W]: a plain [3, C] of the mean, M2 (the sum of squared deviations) and the count.
   */
  syncBatchNormStats(x: NativeBuffer): NativeBuffer;
  /**
   * Every rank's statistics ([W, 3, C], all-gathered) combined by Chan's formula: the group's
   * [mean, biased variance, count], [C] each; updates the running statistics in place (when
   * given) as `batchNormForwardTraining` does.
   */
  syncBatchNormGather(gathered: NativeBuffer, runningMean: NativeBuffer | null, runningVar: NativeBuffer | null,
    momentum: number): [NativeBuffer, NativeBuffer, NativeBuffer];
  /** This rank's [Σ dy, Σ dy·x̂] per channel, x̂ = (x − mean) / √(var + eps). */
  syncBatchNormBackwardReduce(x: NativeBuffer, dy: NativeBuffer, mean: NativeBuffer, variance: NativeBuffer, eps: number): [NativeBuffer, NativeBuffer];
  /** dx = weight / √(var + eps) · (dy − Σdy / count − x̂ · Σdy·x̂ / count), with the group's sums and count. */
  syncBatchNormBackwardElemt(x: NativeBuffer, dy: NativeBuffer, mean: NativeBuffer, variance: NativeBuffer, weight: NativeBuffer,
    sumDy: NativeBuffer, sumDyXhat: NativeBuffer, count: NativeBuffer, eps: number): NativeBuffer;

  /**
   * Joins a process group (one per addon instance), step one: listens for the other ranks
   * (Gloo, on `host`) or makes the group's id (NCCL, rank 0), and returns the bytes the other
   * ranks need, which the rendezvous (lib/distributed) hands round.
   */
  groupPrepare(rank: number, worldSize: number, timeoutMs: number, host: string): Uint8Array;
  /** Step two, with every rank's `groupPrepare` bytes by rank: resolves once connected to all. */
  groupConnect(published: Uint8Array[]): Promise<void>;
  /** Leaves the group; collectives already queued still run or fail in order. */
  groupDestroy(): void;
  /** Makes every collective blocked in the group, or still to run, fail at once with `reason`. */
  groupAbort(reason: string): void;
  /**
   * Collectives: each enqueues its start and returns its ticket and its outputs, which the
   * communication writes: only ops enqueued after `collectiveWait(ticket)` may read them. Ops
   * queued in between overlap the communication (Gloo runs it on its own thread). Every rank
   * must start the same collectives in the same order. All-reduce and broadcast reduce float32
   * buffers as one flat bucket, one output per input; `'mean'` is the sum divided by the world
   * size. A collective nobody waits for still runs, and holds nothing once it has.
   */
  allReduce(buffers: NativeBuffer[], op: 'sum' | 'mean' | 'max'): StartedCollective;
  broadcast(buffers: NativeBuffer[], root: number): StartedCollective;
  /** The output is [worldSize, ...shape], rank r's values at index r. */
  allGather(buffer: NativeBuffer): StartedCollective;
  /** No outputs: waiting for it orders after every rank's start. */
  barrier(): StartedCollective;
  /**
   * Enqueues the wait for a started collective; a failure (a peer lost, the timeout) rejects the
   * next sync point, naming the collective. A fence: waiting twice is harmless.
   */
  collectiveWait(ticket: number): void;
}
