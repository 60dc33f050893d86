"""Data at scale: an image folder of photo-sized JPEGs, decoded once into the disk store and trained from it.

What is measured, on an image folder of --images JPEGs at 500x375 (made from real images: Fashion-MNIST
training images, upscaled bicubically, tinted per class and re-encoded at quality 90, in 10 class folders;
kept in --work and reused):
  1. the cache build (`cnntricks cache`: decoding every JPEG to 3x224x224 in --workers processes): images/s;
  2. training from it (`cnntricks train ... data.storage=disk`, one epoch on --train-images of them, the
     default recipe with batches of 32 otherwise) in a child process: the share of the training seconds the steps waited for a
     batch read from disk (summary.json's data_wait_seconds / train_seconds; target under 5%) and the child's
     peak resident memory (target under 2 GB whatever the data set's size);
  3. the same training with data.storage=memory, whose peak memory holds every decoded image (the contrast).

    python benchmarks/data_at_scale.py                    # 20,000 JPEGs, about 20 minutes on 2 cores
    python benchmarks/data_at_scale.py --smoke            # 300 small JPEGs, for CI
    python benchmarks/data_at_scale.py --cold --work DIR  # the store evicted from the page cache before each run

--cold asks the kernel to drop the cache's files from the page cache (posix_fadvise DONTNEED, which needs no
root) before each training run, so the disk run reads its batches from the disk, not from memory.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cnntricks.train.device import cpu_name

MAX_WAIT_SHARE = 0.05  # of the training seconds
MAX_MEMORY = 2e9       # bytes of peak resident memory of a data.storage=disk run
RESULTS = Path(__file__).resolve().parent / "results" / "data_at_scale.json"
TINTS = [(255, 255, 255), (255, 200, 200), (200, 255, 200), (200, 200, 255), (255, 255, 200),
         (255, 200, 255), (200, 255, 255), (255, 230, 180), (180, 230, 255), (230, 180, 255)]


def write_jpegs(task: tuple[str, np.ndarray, np.ndarray, int, tuple[int, int]]) -> int:
    from PIL import Image
    folder, images, labels, start, size = task
    for offset, (pixels, label) in enumerate(zip(images, labels)):
        gray = Image.fromarray(pixels, "L").resize(size, Image.BICUBIC)
        tinted = Image.merge("RGB", [gray.point(lambda v, t=t: v * t // 255) for t in TINTS[int(label)]])
        path = Path(folder) / f"class{int(label)}" / f"{start + offset:06d}.jpg"
        tinted.save(path, quality=90)
    return len(images)


def make_folder(folder: Path, count: int, size: tuple[int, int], workers: int) -> float:
    """`count` JPEGs at `size` (width, height) under folder/class<k>/; seconds taken (0 when already there)."""
    marker = folder / f".complete-{count}-{size[0]}x{size[1]}"
    if marker.exists():
        return 0.0
    from cnntricks.config import DataConfig
    from cnntricks.data import load_splits
    started = time.perf_counter()
    train = load_splits(DataConfig(val_fraction=0.0), 0).train
    if count > len(train):
        raise SystemExit(f"data_at_scale: --images {count}: Fashion-MNIST has {len(train)} training images")
    images, labels = train.images[:count, 0].numpy(), train.labels[:count].numpy()
    for label in range(10):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
    step = 500
    tasks = [(str(folder), images[i:i + step], labels[i:i + step], i, size) for i in range(0, count, step)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(write_jpegs, tasks))
    marker.touch()
    return time.perf_counter() - started


PEAK = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=open(sys.argv[0] + '.peak', 'w')); "
        "sys.exit(code)")


def evict(folder: Path) -> int:
    """Drop every file under `folder` from the page cache (clean pages only; the cache is written and closed);
    the bytes of the files asked for."""
    total = 0
    for path in (p for p in folder.rglob("*") if p.is_file()):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)  # written pages become clean, and clean pages can be dropped
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            total += path.stat().st_size
        finally:
            os.close(descriptor)
    return total


def child(command: list[str], env: dict, scratch: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Run `command` under a fresh wrapper process; (its result, the peak resident memory in bytes of the
    largest process it started: ru_maxrss of the wrapper's children, its own alone)."""
    marker = scratch / f"child-{time.monotonic_ns()}"
    done = subprocess.run([sys.executable, "-c", PEAK.replace("sys.argv[0]", repr(str(marker))), *command],
                          capture_output=True, text=True, env=env)
    peak = int(Path(f"{marker}.peak").read_text()) * 1024 if Path(f"{marker}.peak").exists() else 0  # kB on Linux
    return done, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="data_at_scale.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 = ran (and, without --smoke, met both targets); 1 = a "
                                            "target not met.")
    parser.add_argument("--images", type=int, default=20_000, help="JPEGs in the folder (default 20,000)")
    parser.add_argument("--train-images", type=int, default=3_000,
                        help="training images of the one epoch timed (data.subset; default 3,000)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes of the cache build (default 2)")
    parser.add_argument("--work", type=Path, help="where the JPEGs and the cache go (default: a temporary folder; "
                                                  "give one to reuse the JPEGs)")
    parser.add_argument("--out", type=Path, help=f"results file (default {RESULTS}; --smoke: none)")
    parser.add_argument("--smoke", action="store_true", help="300 JPEGs at 64x48, cached at 32, 200 trained on")
    parser.add_argument("--cold", action="store_true", help="drop the cache's files from the page cache before each "
                                                            "training run (a cold disk)")
    args = parser.parse_args(argv)
    count, train_images = (300, 200) if args.smoke else (args.images, args.train_images)
    source_size, size = ((64, 48), 32) if args.smoke else ((500, 375), 224)
    out = args.out or (None if args.smoke else RESULTS)
    context = tempfile.TemporaryDirectory(prefix="data-at-scale-") if args.work is None else None
    work = Path(context.name) if context else args.work
    try:
        folder, cache = work / f"jpegs-{count}", work / "cache"
        print(f"cpu {cpu_name()}, {os.cpu_count()} cores; {count:,} JPEGs at {source_size[0]}x{source_size[1]}, "
              f"cached at 3x{size}x{size} with {args.workers} workers", flush=True)
        made = make_folder(folder, count, source_size, args.workers)
        print(f"made the JPEGs in {made:.1f} s" if made else f"the JPEGs were already in {folder}", flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                         os.environ.get("PYTHONPATH")]))}
        common = ["data.source=image-folder", f"data.root={folder}", f"data.image_size={size}",
                  f"data.cache_dir={cache}"]
        shutil.rmtree(cache, ignore_errors=True)  # the build is timed from nothing (the JPEGs are kept)
        started = time.perf_counter()
        done, _ = child([sys.executable, "-m", "cnntricks", "cache", *common, "--workers", str(args.workers)], env, work)
        build = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"data_at_scale: cnntricks cache exited {done.returncode}:\n{done.stderr[-2000:]}")
        print(f"cache build: {count / build:,.0f} images/s ({count:,} in {build:.1f} s, {args.workers} workers); "
              f"{done.stdout.strip()}", flush=True)
        runs = {}
        for storage in ("disk", "memory"):
            run_dir = work / f"run-{storage}"
            # batches of 32: at 224x224 the model's activations for 128 images (and evaluation's 1024) alone take
            # gigabytes; at 32 the peak memory is mostly the data's, which is what is measured
            command = [sys.executable, "-m", "cnntricks", "train", *common, f"data.storage={storage}",
                       f"data.subset={train_images}", "train.epochs=1", "train.monitor=off", "doctor.mode=off",
                       "optim.batch_size=32", "train.eval_batch_size=32", "--run-dir", str(run_dir), "--quiet"]
            if args.cold:
                print(f"--cold: {evict(cache) / 1e9:.2f} GB of cache files dropped from the page cache", flush=True)
            started = time.perf_counter()
            done, peak = child(command, env, work)
            if done.returncode != 0:
                raise SystemExit(f"data_at_scale: {' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
            summary = json.loads((run_dir / "summary.json").read_text())
            wait = summary.get("data_wait_seconds")
            runs[storage] = {"peak_memory": peak, "train_seconds": summary["train_seconds"], "wait_seconds": wait,
                             "wait_share": None if wait is None else wait / summary["train_seconds"],
                             "images_per_second": summary["images_per_second"], "steps": summary["steps"],
                             "wall_seconds": time.perf_counter() - started}
            share = "" if wait is None else f", waited for data {wait:.2f} s ({100 * wait / summary['train_seconds']:.1f}%)"
            print(f"train data.storage={storage}: {summary['steps']} steps in {summary['train_seconds']:.1f} s "
                  f"({summary['images_per_second']:.0f} images/s){share}; peak memory {peak / 1e9:.2f} GB", flush=True)
        disk = runs["disk"]
        wait_met, memory_met = disk["wait_share"] < MAX_WAIT_SHARE, disk["peak_memory"] < MAX_MEMORY
        print(f"targets: waiting for data {100 * disk['wait_share']:.1f}% of training (< {100 * MAX_WAIT_SHARE:.0f}%: "
              f"{'met' if wait_met else 'NOT MET'}); peak memory from disk {disk['peak_memory'] / 1e9:.2f} GB "
              f"(< {MAX_MEMORY / 1e9:.0f} GB: {'met' if memory_met else 'NOT MET'}), from memory "
              f"{runs['memory']['peak_memory'] / 1e9:.2f} GB")
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"benchmark": "data_at_scale", "cpu": cpu_name(), "images": count,
                                       "source_size": source_size, "size": size, "workers": args.workers,
                                       "cold": args.cold, "build_seconds": build, "build_images_per_second": count / build,
                                       "train_images": train_images, "runs": runs,
                                       "met": {"wait": wait_met, "memory": memory_met}}, indent=2))
            print(f"wrote {out}")
        return 0 if (wait_met and memory_met) or args.smoke else 1
    finally:
        if context:
            context.cleanup()


if __name__ == "__main__":
    sys.exit(main())
