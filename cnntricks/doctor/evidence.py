"""What the doctor reads: only the run directory (config.yaml, history.jsonl, stats.jsonl, and
data.json / summary.json / the last checkpoint's weights when present), so a run written by
another loop in the documented format is diagnosed the same way."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cnntricks import config as config_module
from cnntricks.train.history import read_history


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

    def losses(self) -> list[float | None]:
        return [b.get("loss") for b in self.batches]


def load_evidence(run_dir: str | Path) -> Evidence:
    """Read a run directory; raises FileNotFoundError when it holds no history.jsonl."""
    from cnntricks.monitor import read_stats  # the monitor imports train/; keep this module light

    run_dir = Path(run_dir)
    records = read_history(run_dir)
    cfg = config_module.load(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else None
    stats = read_stats(run_dir) if (run_dir / "stats.jsonl").is_file() else []
    classes = None
    if (run_dir / "data.json").is_file():
        classes = len(json.loads((run_dir / "data.json").read_text()).get("classes", [])) or None
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else None
    return Evidence(run_dir, cfg,
                    batches=[r for r in records if r.get("kind") == "batch"],
                    epochs=[r for r in records if r.get("kind") == "epoch"],
                    events=[r for r in records if r.get("kind") == "event"],
                    stats=stats, classes=classes, summary=summary)
