"""PyTorch peer: torchvision ResNet-50 / ResNeXt-50 training images/s, for the same table.

channels_last, bf16 autocast, torch.compile, SGD with momentum, synthetic data on the device;
the JSON fields match ``restransfer bench train``. Without torch installed it writes a record
saying so and exits 0, so ``benchmarks/gpu.sh`` runs to the end either way.

    python benchmarks/torch_peer.py --models resnet50 resnext50_32x4d --batch-size 256 \
        --out benchmarks/results/gpu-torch.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def bench_model(name: str, *, batch_size: int, image_size: int, steps: int, warmup: int,
                compile_model: bool) -> dict:
    import torch
    import torchvision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = getattr(torchvision.models, name)(num_classes=1000).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch_size,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    step_fn = torch.compile(step) if compile_model else step
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step_fn().item()
    first = time.perf_counter() - start
    for _ in range(warmup):
        step_fn()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step_fn()
        sync()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    name_of_device = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return {
        "model": name, "implementation": "torchvision", "backend": f"torch {torch.__version__}",
        "device": name_of_device, "accelerator": "gpu" if device == "cuda" else "cpu",
        "precision": "bf16_autocast", "jit_compile": compile_model, "batch_size": batch_size,
        "image_size": image_size, "img_per_s": batch_size / median, "step_ms_median": median * 1e3,
        "timed_steps": steps, "compile_s": max(first - median, 0.0),
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "ratio_to_reference": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnext50_32x4d"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="eager mode instead of torch.compile")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as error:
        records = [{"implementation": "torchvision", "skipped": f"{error}; pip install torch torchvision"}]
        print(f"torch peer skipped: {error}")
    else:
        records = [bench_model(m, batch_size=args.batch_size, image_size=args.image_size, steps=args.steps,
                               warmup=args.warmup, compile_model=not args.no_compile) for m in args.models]
        for r in records:
            print(f"{r['model']} torchvision: {r['img_per_s']:.1f} img/s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"settings": vars(args), "results": records}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
