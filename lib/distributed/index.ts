/**
 * Data-parallel training across processes and machines: a process group over Gloo (CPU) or
 * NCCL (GPU), set up from torchrun's environment variables, and its collectives.
 * `nn.DistributedDataParallel` builds on it; `cudnn-resnet launch` starts the processes.
 * @module
 */
export { init, destroy, isInitialized, rank, worldSize, backend, device, type InitOptions, type DistBackend } from './process-group.js';
export { allReduce, broadcast, allGather, barrier, type ReduceOp } from './collectives.js';
