"""`train.monitor` as a plug-in of the training loop: the `Monitor`'s four calls on the loop's
events, its file and its dead-unit windows in every checkpoint (format: monitor.py)."""
from __future__ import annotations

from cnntricks.monitor.monitor import Monitor
from cnntricks.rundir import STATS


class MonitorPlugin:
    """Attach with `fit(..., callbacks=[MonitorPlugin()])`; samples every `train.monitor` steps
    (the resolved config's `monitor_every`), or every `every` steps when given."""

    def __init__(self, every: int | None = None):
        self.every, self.monitor = every, None

    def on_restore(self, trainer, saved: dict) -> None:
        if self.monitor is None or self.monitor.model is not trainer.model:  # a new run, or a restarted one
            every = self.every or trainer.resolved.monitor_every
            self.monitor = Monitor(trainer.model, trainer.run_dir / STATS, every) if every else None
        if self.monitor is not None:
            self.monitor.truncate(saved.get("stats_lines", 0))
            self.monitor.load_state_dict(saved.get("monitor") or {})

    def on_step_start(self, trainer) -> None:
        if self.monitor is not None:
            self.monitor.before_forward(trainer.state.step + 1)

    def on_after_backward(self, trainer) -> None:
        if self.monitor is not None and self.monitor.armed:
            self.monitor.after_backward(grad_scale=trainer.grad_scale)

    def on_step_end(self, trainer) -> None:
        if self.monitor is not None and self.monitor.armed:
            self.monitor.after_step(trainer.state.step, trainer.state.epoch + 1)

    def flush(self) -> None:
        if self.monitor is not None:
            self.monitor.flush()

    def on_checkpoint(self, trainer) -> dict:
        if self.monitor is None:
            return {}
        return {"stats_lines": self.monitor.flush(), "monitor": self.monitor.state_dict()}
