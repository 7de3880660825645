"""Training throughput (images/s) and peak memory of the trial loop, AMP on vs off.

Runs ``hwnas.trials.loop.TrialRun.train_epoch`` (the real training step: augmentation, autocast,
GradScaler, clipping, cosine schedule) on synthetic CIFAR-shaped data, for an NB201 and a
MobileNet-style net. Each configuration runs in its own child process so its peak memory is
its own: CUDA ``max_memory_allocated``, or on CPU the peak resident set (``ru_maxrss``) and its
rise above the RSS just before training. Reports the median of the repeats.

    python benchmarks/train_throughput.py                     # CPU: amp off vs bf16
    python benchmarks/train_throughput.py --device cuda --amp off bf16 fp16 --channels-last
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

NETS = {
    # NB201's best-known CIFAR cell at the benchmark's standard size (C=16, N=5).
    "nb201": (
        {"C": 16, "N": 5},
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
        "nor_conv_3x3~2|",
    ),
    # A mid-sized member of the default MobileNetV3-style space.
    "mobilenet": (
        {},
        "d2-k3-e4-w1.0-se0|d2-k5-e4-w1.0-se1|d3-k3-e4-w1.0-se0|d3-k5-e6-w1.0-se1|"
        "d2-k3-e6-w1.0-se1|d2-k5-e6-w1.0-se1",
    ),
}


def _rss_mib() -> float:
    """Current resident set size (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """One (net, amp) configuration in this process: warm-up, then timed repeats."""
    import torch

    from hwnas.contract import DataSettings
    from hwnas.trials.data import DatasetInfo, InMemoryData
    from hwnas.trials.loop import TrialRun

    options, arch = NETS[cfg["net"]]
    steps, batch = cfg["steps"], cfg["batch_size"]
    n = steps * batch
    info = DatasetInfo("synthetic", (3, 32, 32), 10)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n + n // 4, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (len(images),), generator=gen)
    data = InMemoryData(
        info,
        images,
        labels,
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.25),
        settings=DataSettings(dataset="cifar10", val_fraction=0.2, train_subset=n),
        seed=0,
        pad=4,
        flip=True,
    )
    hparams = {
        "space": cfg["net"],
        "space_options": options,
        "arch": arch,
        "seed": 0,
        "training": {
            "max_epochs": cfg["repeats"] + 1,
            "batch_size": batch,
            "amp": cfg["amp"],
            "channels_last": cfg["channels_last"],
            "compile": cfg["compile"],
            "cpu_threads": cfg["threads"],
        },
        "latency": {"enabled": False},
    }
    run = TrialRun(hparams, device=cfg["device"], data=data)
    cuda = run.device.type == "cuda"
    run.train_epoch()  # warm-up: allocator, kernels selection, compilation
    if cuda:
        torch.cuda.reset_peak_memory_stats(run.device)
    rss_before = _rss_mib()
    rates = [run.train_epoch()["images_per_second"] for _ in range(cfg["repeats"])]
    out = {
        **cfg,
        "device_name": torch.cuda.get_device_name(run.device) if cuda else "cpu",
        "params": sum(p.numel() for p in run.model.parameters()),
        "images_per_second": statistics.median(rates),
        "images_per_second_all": rates,
    }
    if cuda:
        out["peak_memory_mib"] = torch.cuda.max_memory_allocated(run.device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        out["peak_memory_mib"] = peak
        out["peak_rss_rise_mib"] = max(0.0, peak - rss_before)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument(
        "--amp", nargs="+", default=["off", "bf16"], choices=["off", "bf16", "fp16"]
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="training steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one config, JSON in and out
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_config(json.loads(args.child))))
        return 0

    results = []
    for net in args.nets:
        for amp in args.amp:
            cfg = {
                "net": net,
                "amp": amp,
                "device": args.device,
                "batch_size": args.batch_size,
                "steps": args.steps,
                "repeats": args.repeats,
                "threads": args.threads,
                "channels_last": args.channels_last,
                "compile": args.compile,
            }
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(cfg)],
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            if proc.returncode != 0:
                print(f"{net} amp={amp} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"done: {net} amp={amp}", file=sys.stderr)
    _print_table(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0 if results else 1


def _print_table(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="trial training throughput (median of repeats)")
    columns = ("net", "device", "amp", "layout", "threads", "batch", "params", "images/s", "runs")
    for column in (*columns, "peak MiB"):
        table.add_column(column, justify="left" if column in ("net", "device") else "right")
    for r in results:
        peak = f"{r['peak_memory_mib']:.0f}"
        if "peak_rss_rise_mib" in r:
            peak += f" (+{r['peak_rss_rise_mib']:.0f})"
        table.add_row(
            r["net"],
            r["device_name"],
            r["amp"],
            ("channels_last" if r["channels_last"] else "nchw")
            + (" compiled" if r["compile"] else ""),
            str(r["threads"] or "default"),
            str(r["batch_size"]),
            f"{r['params']:,}",
            f"{r['images_per_second']:.0f}",
            " ".join(f"{x:.0f}" for x in r["images_per_second_all"]),
            peak,
        )
    Console(width=max(120, Console().width)).print(table)


if __name__ == "__main__":
    sys.exit(main())
