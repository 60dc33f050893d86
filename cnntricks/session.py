"""A training session: `fit` with the plug-ins the config asks for.

`train.loop.fit` is the bare loop: it attaches only the history and the progress bar, and
whatever plug-ins it is given. `train` here adds the two the config names: `train.monitor`
(layer statistics, monitor/) and `doctor.mode` (the live doctor, doctor/act.py). It is what
`cnntricks train`, the studies and the benchmarks call; call `fit` to choose the plug-ins yourself.
"""
from __future__ import annotations

from pathlib import Path

from cnntricks.config import Config
from cnntricks.doctor.act import TrainingDoctor
from cnntricks.monitor.plugin import MonitorPlugin
from cnntricks.train.loop import fit


def standard_plugins(cfg: Config) -> list:
    """The plug-ins `cfg` asks for: the monitor unless train.monitor=off, the doctor unless doctor.mode=off."""
    plugins = []
    if cfg.train.monitor != "off":
        plugins.append(MonitorPlugin())  # samples every N steps of the resolved train.monitor
    if cfg.doctor.mode != "off":
        plugins.append(TrainingDoctor())  # reads doctor.mode from the run's resolved config
    return plugins


def train(cfg: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
          callbacks: tuple = ()) -> dict:
    """`fit` with the config's plug-ins, then `callbacks`; returns the run's summary."""
    return fit(cfg, run_dir, resume=resume, progress=progress, callbacks=(*standard_plugins(cfg), *callbacks))
