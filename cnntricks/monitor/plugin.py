"""`train.monitor` as a plug-in of the training loop: the `Monitor`'s four calls on the loop's
events, its file and its dead-unit windows in every checkpoint (format: monitor.py)."""
from __future__ import annotations

from cnntricks.monitor.monitor import Monitor
from cnntricks.rundir import STATS

# A run shorter than every:N x MIN_SAMPLES steps is sampled more often, so that it too has about
# this many records spread over all of it: the doctor's trends need them (a 55-step run at every:50
# had steps 1 and 50 only, one inside the warm-up and one at the end of the decay).
MIN_SAMPLES = 10


def sampling_interval(every: int, planned_steps: int) -> int:
    """train.monitor's every:N, shortened for a run of `planned_steps` to give MIN_SAMPLES records."""
    return max(1, min(every, planned_steps // MIN_SAMPLES))


class MonitorPlugin:
    """Attach with `fit(..., callbacks=[MonitorPlugin()])`; samples every `train.monitor` steps (the
    resolved config's `monitor_every`, more often in a short run: `sampling_interval`), or every
    `every` steps exactly when given."""

    def __init__(self, every: int | None = None):
        self.every, self.monitor = every, None

    def on_restore(self, trainer, saved: dict) -> None:
        if self.monitor is None or self.monitor.model is not trainer.model:  # a new run, or a restarted one
            every = self.every
            if every is None and trainer.resolved.monitor_every:
                every = sampling_interval(trainer.resolved.monitor_every, trainer.schedule.total_steps)
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
