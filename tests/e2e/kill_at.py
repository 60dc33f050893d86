"""Run the cnntricks command line and SIGKILL this very process at a named point of a checkpoint.

    python kill_at.py POINT N train ARGS...     die the N-th time POINT is reached (N counts from 1)

A kill from outside lands where the scheduler puts it; these points are the moments between the
writes of one epoch's history and checkpoint, where a careless writer loses a run:
  history-flushed     the epoch's history lines are on disk, its checkpoint not begun
  history-half        half of the epoch's history text is on disk (a cut-off last line)
(both count only the flushes that carry an epoch line)
  model-written       model.safetensors written in the temporary folder, state.safetensors not
  checkpoint-renamed  the folder renamed into place; `latest` still names the previous checkpoint
  latest-half         `latest`'s temporary file written, not yet renamed over `latest`
  latest-written      `latest` names the new checkpoint; older checkpoints not yet deleted
  old-half-deleted    an old checkpoint half deleted (model.safetensors gone, state.json left)
  attempt-copied      doctor.mode=fix restarts: attempts/<n>/ complete, the checkpoints still in place
  attempt-archived    ... the checkpoints and summary gone, the new config not yet written
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from cnntricks import cli, rundir
from cnntricks.train import checkpoint, loop

POINTS = ("history-flushed", "history-half", "model-written", "checkpoint-renamed", "latest-half",
          "latest-written", "old-half-deleted", "attempt-copied", "attempt-archived")


def main(point: str, n: int, argv: list[str]) -> int:
    if point not in POINTS:
        raise SystemExit(f"kill_at.py: unknown point {point!r}; points: {', '.join(POINTS)}")
    reached = 0

    def arrive(here: str) -> bool:
        nonlocal reached
        if here == point:
            reached += 1
        return here == point and reached == n

    def die() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    flush = rundir.HistoryWriter.flush

    def flush_then_maybe_die(self):
        # Only the flush that carries an epoch's line counts: the doctor's events may be flushed
        # on their own just before the checkpoint.
        epoch_flush = any('"kind": "epoch"' in line for line in self.pending)
        if epoch_flush and arrive("history-half"):
            text = "\n".join(self.pending) + "\n"
            with self.path.open("a") as f:
                f.write(text[: len(text) // 2])
                f.flush()
                os.fsync(f.fileno())
            die()
        lines = flush(self)
        if epoch_flush and arrive("history-flushed"):
            die()
        return lines
    rundir.HistoryWriter.flush = flush_then_maybe_die

    save_tensors = checkpoint.save_tensors

    def save_then_maybe_die(tensors, filename, *args, **kwargs):
        save_tensors(tensors, filename, *args, **kwargs)
        if Path(filename).name == "model.safetensors" and arrive("model-written"):
            die()
    checkpoint.save_tensors = save_then_maybe_die

    fsync_dir = checkpoint.fsync_dir  # called right after the folder's rename, before `latest`

    def fsync_then_maybe_die(path):
        fsync_dir(path)
        if arrive("checkpoint-renamed"):
            die()
    checkpoint.fsync_dir = fsync_then_maybe_die

    write_atomic = checkpoint.write_atomic

    def write_then_maybe_die(path, text):  # (checkpoint.py writes `latest` with rundir.write_atomic)
        path = Path(path)
        if path.name == "latest" and arrive("latest-half"):
            (path.parent / f".latest.tmp-{os.getpid()}").write_text(text)  # write_atomic's temporary name
            die()
        write_atomic(path, text)
        if Path(path).name == "latest" and arrive("latest-written"):
            die()
    checkpoint.write_atomic = write_then_maybe_die

    rmtree = checkpoint.shutil.rmtree

    def rmtree_or_die(path, *args, **kwargs):
        path = Path(path)
        latest = path.parent / "latest"
        is_old = (path.name.startswith("epoch-") and latest.exists()
                  and path.name < latest.read_text().strip())
        if is_old and arrive("old-half-deleted"):
            (path / "model.safetensors").unlink()
            die()
        return rmtree(path, *args, **kwargs)
    checkpoint.shutil.rmtree = rmtree_or_die

    archive_attempt = loop.archive_attempt  # a restart in fix mode (rundir.archive_attempt, called by fit)

    def archive_or_die(run_dir, event):
        if arrive("attempt-copied"):
            real_rename = rundir.Path.rename

            def rename_then_die(self, target):  # the attempt folder's rename is the copy's last step
                result = real_rename(self, target)
                if self.name.endswith(".partial"):
                    die()
                return result
            rundir.Path.rename = rename_then_die
        kept = archive_attempt(run_dir, event)
        if arrive("attempt-archived"):
            die()
        return kept
    loop.archive_attempt = archive_or_die

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
