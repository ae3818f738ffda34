#!/usr/bin/env python3
"""PyTorch CPU baseline for the op benchmark: CIFAR ResNet-20 shapes at batch 128, float32.

Times the same work as bench/ops.ts so the two can be compared side by side: each distinct
convolution of ResNet-20 (forward, and backward = input grad + weight grad) and training-mode
batch norm. (Whole networks: bench/peer_torch.py, run by `npm run bench`.)

    python3 bench/ops_torch.py --threads 2 --reps 10 --warmup 3 [--channels-last] --json out.json
"""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("ops_torch.py needs PyTorch: pip install torch --index-url https://download.pytorch.org/whl/cpu",
          file=sys.stderr)
    sys.exit(3)

BATCH = 128

# (cin, cout, H, stride, k): every distinct convolution in ResNet-20 with projection shortcuts.
CONV_SHAPES = [
    (3, 16, 32, 1, 3),
    (16, 16, 32, 1, 3),
    (16, 32, 32, 2, 3),
    (32, 32, 16, 1, 3),
    (32, 64, 16, 2, 3),
    (64, 64, 8, 1, 3),
    (16, 32, 32, 2, 1),
    (32, 64, 16, 2, 1),
]
# (C, H): the batch-norm shapes, one per stage.
BN_SHAPES = [(16, 32), (32, 16), (64, 8)]


def time_ms(fn, warmup, reps):
    """Milliseconds per call over `reps` calls after `warmup` untimed ones (oneDNN primitive
    creation and allocator growth happen on the first calls and are not what we compare)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def summary(samples):
    return {"medianMs": statistics.median(samples), "minMs": min(samples), "maxMs": max(samples)}


def conv_ops(args, memory_format):
    results = []
    for cin, cout, size, stride, k in CONV_SHAPES:
        name = f"conv {cin}->{cout} {k}x{k} s{stride} @{size}"
        x = torch.randn(BATCH, cin, size, size).contiguous(memory_format=memory_format)
        w = torch.randn(cout, cin, k, k).contiguous(memory_format=memory_format)

        def forward():
            with torch.no_grad():
                F.conv2d(x, w, None, stride, k // 2)

        xg = x.clone().requires_grad_()
        wg = w.clone().requires_grad_()
        y = F.conv2d(xg, wg, None, stride, k // 2)
        dy = torch.randn_like(y)

        # autograd.grad instead of y.backward: it returns fresh gradients rather than adding into
        # .grad, so the time is the two backward convolutions and nothing else.
        def backward():
            torch.autograd.grad(y, (xg, wg), dy, retain_graph=True)

        for phase, fn in (("forward", forward), ("backward", backward)):
            results.append({"name": name, "phase": phase, **summary(time_ms(fn, args.warmup, args.reps))})
            report(results[-1])
    return results


def batch_norm_ops(args, memory_format):
    results = []
    for channels, size in BN_SHAPES:
        name = f"batchnorm {channels} @{size}"
        x = torch.randn(BATCH, channels, size, size).contiguous(memory_format=memory_format)
        weight, bias = torch.rand(channels) + 0.5, torch.randn(channels)
        running_mean, running_var = torch.zeros(channels), torch.ones(channels)

        def forward():
            with torch.no_grad():
                F.batch_norm(x, running_mean, running_var, weight, bias, training=True, momentum=0.1, eps=1e-5)

        xg, wg, bg = (t.clone().requires_grad_() for t in (x, weight, bias))
        y = F.batch_norm(xg, running_mean, running_var, wg, bg, training=True, momentum=0.1, eps=1e-5)
        dy = torch.randn_like(y)

        def backward():
            torch.autograd.grad(y, (xg, wg, bg), dy, retain_graph=True)

        for phase, fn in (("forward", forward), ("backward", backward)):
            results.append({"name": name, "phase": phase, **summary(time_ms(fn, args.warmup, args.reps))})
            report(results[-1])
    return results


def report(result):
    print(f"  {result['name']:<28} {result['phase']:<8} median {result['medianMs']:8.2f} ms"
          f"  (min {result['minMs']:.2f}, max {result['maxMs']:.2f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true", help="run model and inputs in torch.channels_last")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    args = parser.parse_args()
    if args.threads < 1 or args.reps < 1 or args.warmup < 0:
        parser.error("need --threads >= 1, --reps >= 1, --warmup >= 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, "
          f"{'channels_last' if args.channels_last else 'NCHW'}, {args.warmup} warm-up + {args.reps} reps")

    ops = conv_ops(args, memory_format) + batch_norm_ops(args, memory_format)
    result = {
        "framework": "pytorch",
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "channelsLast": args.channels_last,
        "batch": BATCH,
        "warmup": args.warmup,
        "reps": args.reps,
        "ops": ops,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
