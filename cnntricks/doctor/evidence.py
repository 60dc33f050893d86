"""What the doctor reads: only the run directory (config.yaml, history.jsonl, stats.jsonl, and
data.json / summary.json / the last checkpoint's weights when present), so a run written by
another loop in the documented format is diagnosed the same way."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from cnntricks import config as config_module
from cnntricks.rundir import CONFIG, Run


@dataclass
class Evidence:
    run_dir: Path
    config: config_module.Config | None  # None when the run has no config.yaml (another loop)
    batches: list[dict] = field(default_factory=list)  # {"kind": "batch", "step", "epoch", "loss", "lr"}
    epochs: list[dict] = field(default_factory=list)   # {"kind": "epoch", "epoch", "train_loss", ...}
    events: list[dict] = field(default_factory=list)   # {"kind": "event", "event", "step", ...}
    stats: list[dict] = field(default_factory=list)    # stats.jsonl records (monitor/)
    classes: int | None = None                         # from data.json
    summary: dict | None = None                        # summary.json of a finished run

    @property
    def steps(self) -> int:
        return max((b["step"] for b in self.batches), default=0)

    @cached_property
    def losses(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, losses) of the per-batch records with a finite loss."""
        pairs = [(b["step"], b["loss"]) for b in self.batches
                 if isinstance(b.get("loss"), (int, float)) and math.isfinite(b["loss"])]
        if not pairs:
            return np.zeros(0), np.zeros(0)
        steps, losses = zip(*pairs)
        return np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)

    @cached_property
    def loss_trend(self) -> np.ndarray:
        """`trend` of the finite losses, computed once for every check that reads it."""
        return trend(self.losses[1])


def trend(values: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """Rolling median over ~5% of the run (at least 5 points): the curve without batch noise.

    Centred windows of `window` values, shrinking at both ends. The full windows are taken as
    views of the array, a few million values at a time, so a long run costs memory in chunks.
    """
    n = len(values)
    window = max(5, n // 20)
    half = window // 2
    out = np.empty(n)
    # the ends, where the window is cut by the start or the end of the run
    for i in list(range(min(half, n))) + list(range(max(half, n - half), n)):
        out[i] = np.median(values[max(0, i - half):i + half + 1])
    full = 2 * half + 1
    if n >= full:
        windows = np.lib.stride_tricks.sliding_window_view(values, full)  # window k is centred on k + half
        rows = max(1, chunk // full)
        for start in range(0, n - 2 * half, rows):
            stop = min(start + rows, n - 2 * half)
            out[start + half:stop + half] = np.median(windows[start:stop], axis=1)
    return out


def load_evidence(run_dir: str | Path) -> Evidence:
    """Read a run directory; raises FileNotFoundError when it holds no history.jsonl."""
    run = Run(Path(run_dir))
    batches, epochs, events = run.history
    cfg = config_module.load(run.path / CONFIG) if (run.path / CONFIG).is_file() else None
    classes = len((run.data or {}).get("classes", [])) or None
    return Evidence(run.path, cfg, batches=batches, epochs=epochs, events=events, stats=run.stats,
                    classes=classes, summary=run.summary)
