"""A training session: `fit` with the plug-ins the config asks for, then the run's verdict and report.

`train.loop.fit` is the bare loop: it attaches only the history and the progress bar, and
whatever plug-ins it is given. `train` here adds the two the config names: `train.monitor`
(layer statistics, monitor/), `doctor.mode` (the live doctor, doctor/act.py) and `train.tensorboard`
(event files, monitor/tensorboard.py); and when the run
ends (or diverges) it does what `cnntricks train` does: the doctor's verdict and `report/`, and with
`show` the summary table and the verdict on the terminal. So a run from Python and a run from the
command line leave the same run directory. It is what `cnntricks train` calls; the studies, the
search and the ensemble members call it with report=False (their own figures; seconds a run saved).
Call `fit` to choose the plug-ins yourself.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from cnntricks.config import Config
from cnntricks.doctor.act import TrainingDoctor
from cnntricks.monitor.plugin import MonitorPlugin
from cnntricks.monitor.tensorboard import TensorBoardLog, add_report_figures, check_installed
from cnntricks.rundir import ENSEMBLE
from cnntricks.text import percent, table
from cnntricks.train.loop import TrainingDiverged, fit


def standard_plugins(cfg: Config) -> list:
    """The plug-ins `cfg` asks for: the monitor unless train.monitor=off, the doctor unless doctor.mode=off."""
    plugins = []
    if cfg.train.monitor != "off":
        plugins.append(MonitorPlugin())  # samples every N steps of the resolved train.monitor
    if cfg.doctor.mode != "off":
        plugins.append(TrainingDoctor())  # reads doctor.mode from the run's resolved config
    if cfg.train.tensorboard:
        check_installed()
        plugins.append(TensorBoardLog())
    return plugins


def train(cfg: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
          callbacks: tuple = (), report: bool = True, show: bool | None = None) -> dict:
    """`fit` with the config's plug-ins, then `callbacks`; returns the run's summary. Then, unless
    `report` is False, the doctor's verdict (when doctor.mode is not off) and report/; with `show`
    (default: `progress`) the summary table, the verdict and the report's path are printed. A run that
    diverges gets its report and verdict too before TrainingDiverged goes on up."""
    run_dir = Path(run_dir)
    show = progress if show is None else show
    try:
        summary = fit(cfg, run_dir, resume=resume, progress=progress, callbacks=(*standard_plugins(cfg), *callbacks))
    except TrainingDiverged:
        if report:
            findings = diagnose_run(run_dir) if cfg.doctor.mode != "off" else None  # the verdict matters most here
            draw_report(run_dir, findings)
            if show and findings is not None:
                print_findings(findings, sys.stderr)
        raise
    if report:
        findings = diagnose_run(run_dir) if cfg.doctor.mode != "off" else None  # once, for report and verdict
        drawn = draw_report(run_dir, findings)
        if drawn and cfg.train.tensorboard:
            add_report_figures(run_dir)
        if show:
            print(table(summary_rows(summary, run_dir), ["summary", ""]))
            if findings is not None:
                print()
                print_findings(findings, sys.stdout)
            if drawn:
                print(f"report: {run_dir / 'report' / 'index.html'}")
    return summary


def summary_rows(summary: dict, run_dir: Path) -> list[list]:
    return [["test accuracy", percent(summary["test_acc"])],
            ["best validation accuracy", percent(summary["best_val_acc"])],
            ["epochs", summary["epochs"]], ["training seconds", f"{summary['train_seconds']:.1f}"],
            ["images/s", f"{summary['images_per_second']:.0f}"],
            ["stopped because", summary["stop_reason"]],
            *([["test split scored", f"the best epoch's weights (epoch {summary['best_epoch']})"]]
              if summary.get("test_weights") == "best" else []),
            *([["started again (doctor.mode=fix)", "; ".join(r["message"] for r in summary["restarts"])]]
              if summary.get("restarts") else []),
            ["device / precision", f"{summary['device']} / {summary['precision']}"],
            ["run directory", str(run_dir)]]


def diagnose_run(run_dir: Path) -> list | None:
    """The doctor's findings, or None (with a warning) when it cannot read the run."""
    from cnntricks.doctor import diagnose
    try:
        return diagnose(run_dir)
    except Exception as err:  # the verdict must never cost the user a trained model
        warnings.warn(f"the doctor could not read {run_dir}: {err}")
        return None


def draw_report(run_dir: Path, findings: list | None = None) -> bool:
    """report/ and index.html (a run's, or an ensemble's); `findings` None: the report asks the doctor
    (and shows its error). False (with a warning) when it could not be written."""
    try:
        if (Path(run_dir) / ENSEMBLE).is_file():
            from cnntricks.report.ensemble_report import write_ensemble_report
            write_ensemble_report(run_dir)
            return True
        from cnntricks.report import write_report
        write_report(run_dir, findings)
        return True
    except Exception as err:  # a figure must never cost the user a trained model
        warnings.warn(f"could not write the report in {Path(run_dir) / 'report'}: {err}")
        return False


def print_findings(findings: list, stream, minimum: str = "warning") -> None:
    from cnntricks.doctor import format_findings
    print(format_findings(findings, minimum), file=stream)
