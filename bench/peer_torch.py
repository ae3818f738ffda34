#!/usr/bin/env python3
"""One PyTorch benchmark job in its own process (started by bench/index.ts), reported over the
line protocol of bench/harness.ts: one network, one batch size, one phase (training step or
inference), eager mode, NCHW or channels_last, on the CPU or a CUDA device.

    python3 bench/peer_torch.py --model resnet20 --batch 128 --phase train [--channels-last]
        [--autocast bf16] [--device cpu|cuda] [--threads 2] [--warmup 3] [--reps 10] [--budget 30]

The same work as bench/peer.ts: random inputs and labels, SGD (lr 0.1, momentum 0.9, weight
decay 1e-4), cross-entropy; a training step is zero_grad + forward + backward + step, inference
is a forward pass in eval mode under no_grad; each is timed until done (torch.cuda.synchronize
on a GPU; CPU ops are synchronous). --autocast bf16 runs the forward and the loss under
torch.autocast(device, dtype=torch.bfloat16), the one line a PyTorch user adds.
"""

import argparse
import contextlib
import json
import os
import sys
import time


def emit(message):
    os.write(PROTOCOL_FD, (json.dumps(message) + "\n").encode())


# The parent opens a pipe as fd 3 and says so; run by hand, messages go to stdout.
PROTOCOL_FD = 3 if os.environ.get("BENCH_PROTOCOL_FD") == "3" else 1


def time_steps(phase, step, sync, args):
    """The loop of bench/harness.ts timeSteps: warm-up (at most a quarter of the budget), then
    timed steps until `reps` or until the next one would not fit in the budget."""
    start = time.perf_counter()
    budget = args.budget
    warm = timed = 0
    while True:
        warming_up = warm < args.warmup and time.perf_counter() - start < budget / 4
        t0 = time.perf_counter()
        step()
        sync()
        ms = (time.perf_counter() - t0) * 1e3
        emit({"type": "step", "phase": phase, "ms": ms, "warm": warming_up})
        if warming_up:
            warm += 1
        else:
            timed += 1
            if timed >= args.reps:
                break
        if time.perf_counter() - start + ms / 1e3 > budget * 0.9:
            break


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["resnet20", "resnet50"], required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--phase", choices=["train", "infer"], required=True)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--autocast", choices=["bf16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--budget", type=float, default=30, help="seconds")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from torch_models import MODELS, trainable_params
    except ImportError as e:
        emit({"type": "unavailable", "reason": f"PyTorch not importable ({e})"})
        emit({"type": "done"})
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        emit({"type": "unavailable", "reason": "torch sees no CUDA device"})
        emit({"type": "done"})
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    size, classes = (32, 10) if args.model == "resnet20" else (224, 1000)
    model = MODELS[args.model]().to(device=device, memory_format=fmt)
    emit({"type": "meta", "framework": "pytorch", "version": torch.__version__, "params": trainable_params(model),
          "threads": torch.get_num_threads() if device.type == "cpu" else None,
          "notes": ("channels_last" if args.channels_last else "NCHW") + (", autocast bf16" if args.autocast else "")})
    if args.autocast:
        def precision():
            return torch.autocast(device.type, dtype=torch.bfloat16)
    else:
        precision = contextlib.nullcontext
    x = torch.randn(args.batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    labels = (torch.arange(args.batch, device=device) * 7) % classes
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    if args.phase == "infer":
        model.eval()

        def step():
            with torch.no_grad(), precision():
                model(x)
    else:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            with precision():
                loss = F.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()

    time_steps(args.phase, step, sync, args)
    emit({"type": "done"})


if __name__ == "__main__":
    main()
