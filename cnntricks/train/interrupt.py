"""Stopping on a signal without losing work: SIGTERM and SIGINT become a checkpoint, then an exit.

SIGTERM is what schedulers, `docker stop`, Kubernetes and spot preemption send before they kill;
SIGINT is Ctrl-C. While the loop trains, either one is noted and acted on at the next step
boundary: the trainer writes a checkpoint inside the epoch and raises `Interrupted`, which the
command line turns into exit code 128 + the signal's number (143, 130) and one line naming the
checkpoint. `cnntricks train --resume` continues from it, and the run still ends with the numbers
of one never interrupted. A second Ctrl-C stops at once (the newest checkpoint is then the last
complete one). Outside the loop (loading data, evaluating, writing the report) a signal raises
`Interrupted` straight away: nothing there is lost that a resume does not redo.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """A signal stopped the run; `checkpoint` is where it continues from (None: the newest there is).

    A KeyboardInterrupt, so code that catches Exception lets it through, as it does Ctrl-C."""

    def __init__(self, signum: int, checkpoint: Path | None = None):
        self.signum, self.checkpoint = signum, checkpoint
        self.exit_code = 128 + signum
        super().__init__(signal.Signals(signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class StopSignals:
    """A context manager: SIGTERM and SIGINT are noted in `received` while `deferring` is true, raised
    as `Interrupted` otherwise. Installed only in the main thread (where Python runs handlers)."""

    def __init__(self):
        self.received: int | None = None
        self.deferring = False
        self.previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def handle(self, signum: int, frame) -> None:
        if not self.deferring or (signum == signal.SIGINT and self.received is not None):
            _raise_outside_imports(signum, frame)  # not inside the loop, or a second Ctrl-C: now
        else:
            self.received = signum


def raise_on_sigterm() -> None:
    """Make SIGTERM raise `Interrupted` (the command line's default outside training): without a
    handler, Python dies silently with exit 143."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_outside_imports)


def _raise_outside_imports(signum: int, frame) -> None:
    """Raise `Interrupted`, but never inside an import: an exception there that a library catches
    leaves a module half made (seen: numpy without `matrix`). Inside one, the signal is sent again
    a moment later."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            retry = threading.Timer(0.05, os.kill, (os.getpid(), signum))
            retry.daemon = True
            retry.start()
            return
        frame = frame.f_back
    raise Interrupted(signum)
