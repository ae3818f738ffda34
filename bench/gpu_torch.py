#!/usr/bin/env python3
"""PyTorch baseline for bench/gpu.ts on the same GPU: training throughput of ResNet-20 (CIFAR
shape, batch 128) and torchvision's ResNet-50 layout (224x224, batch 64), float32 NCHW, with
TF32 convolutions on and off (torch.backends.cudnn.allow_tf32), or (--precision bf16) AMP in
bfloat16 (torch.autocast) with model and input channels_last, eager, cudnn.benchmark off so that
both libraries pick algorithms by heuristics.

    python3 bench/gpu_torch.py [--precision fp32|bf16] [--reps 10] [--warmup 3] [--json out.json] [--dry-run]

--dry-run checks the arguments and the imports, says what would run, and exits 0 without touching
a GPU (scripts/gpu-check.sh --dry-run).
"""

import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default="")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    a = ap.parse_args()
    bf16 = a.precision == "bf16"
    try:
        import torch
    except ImportError as e:
        if a.dry_run:
            print(f"gpu_torch.py --dry-run: PyTorch is not importable here ({e}); the GPU machine's python3 has it")
            return
        print("gpu_torch.py needs PyTorch with CUDA", file=sys.stderr)
        sys.exit(3)
    import torch.nn.functional as F

    from torch_models import resnet20, resnet50

    if a.dry_run:
        print(f"gpu_torch.py --dry-run: torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}; would time "
              f"resnet20 batch 128 and resnet50 batch 64, "
              f"{'AMP bfloat16 channels_last' if bf16 else 'float32, TF32 on and off'}, "
              f"{a.warmup} warm-up and {a.reps} timed steps each")
        return
    if not torch.cuda.is_available():
        print("gpu_torch.py: torch sees no CUDA device", file=sys.stderr)
        sys.exit(2)
    torch.backends.cudnn.benchmark = False
    rows = []
    for name, batch, size, classes, make in [("resnet20", 128, 32, 10, resnet20), ("resnet50", 64, 224, 1000, resnet50)]:
        # bf16: one row a model (TF32 does not apply to bfloat16 convolutions).
        for tf32 in (True,) if bf16 else (True, False):
            torch.backends.cudnn.allow_tf32 = tf32
            # As in cudnn-resnet, whose linear layer is always full float32 (PyTorch's default).
            torch.backends.cuda.matmul.allow_tf32 = False
            net = make().cuda().train()
            x = torch.randn(batch, 3, size, size, device="cuda")
            if bf16:
                net = net.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
            y = torch.arange(batch, device="cuda") % classes

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(net(x), y)
                loss.backward()
                opt.step()

            for _ in range(a.warmup):
                step()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(a.reps):
                step()
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) * 1000 / a.reps
            rows.append({"model": name, "batch": batch, "precision": a.precision, "tf32": tf32,
                         "imgPerSec": batch * 1000 / ms, "msPerStep": ms})
            mode = "bf16 autocast" if bf16 else f"tf32 {'on ' if tf32 else 'off'}"
            print(f"torch {name} batch {batch} {mode}: {batch * 1000 / ms:.1f} img/s ({ms:.1f} ms/step)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                       "device": torch.cuda.get_device_name(0), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
