#!/usr/bin/env python3
"""One rank of PyTorch's gloo all-reduce for bench/distributed.ts: the same sizes and rounds as
this library's rank (float32 buffers, `reps` all-reduces per round, the first round apart), with
torch's in-place `dist.all_reduce` and one thread. Prints one JSON line.

    RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p python3 bench/distributed_torch.py REPS ROUNDS 1,4,25,100
"""

import json
import statistics
import sys
import time

import torch
import torch.distributed as dist


def main():
    reps, rounds = int(sys.argv[1]), int(sys.argv[2])
    sizes = [int(s) for s in sys.argv[3].split(",")]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    out = []
    for mib in sizes:
        x = torch.randn(mib * 2**18)
        times = []
        for _ in range(rounds + 1):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                dist.all_reduce(x)
            times.append((time.perf_counter() - t0) * 1000 / reps)
        out.append({"mib": mib, "coldMs": times[0], "warmMs": statistics.median(times[1:])})
    dist.destroy_process_group()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
