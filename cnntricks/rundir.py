"""The run directory: the files a training run writes, how they are written, and how to read them.

This is the format other loops are invited to write too: `cnntricks doctor` and the report read
nothing else. It sits at the bottom of the package and imports nothing else of cnntricks.

    run_dir/
      config.yaml          the fully resolved configuration (every key)
      data.json            what the model was built for: {"source", "classes", "channels",
                           "height", "width"} (so predict needs no training data), and
                           "train_counts": the training images per class
      preprocess.json      normalization fitted on the training split: {"mean": [...], "std": [...]}
                           per channel, in [0, 1] pixel units (minmax: the midpoint and half-range)
      preprocess.safetensors  with preprocess.whiten: the PCA or ZCA mean and matrix, or the patch
                           convolution's weight and bias
      fancy_pca.json       with fancy PCA: the training set's RGB eigenvalues and eigenvectors
      history.jsonl        one JSON object per line (below)
      stats.jsonl          with train.monitor: layer statistics, one line per sampled step
                           (the format: cnntricks/monitor/monitor.py)
      summary.json         SUMMARY_KEYS, below
      checkpoints/epoch-NNNN/  model.safetensors (weights and buffers), state.safetensors
                           (optimizer tensors, RNG states), state.json (epoch, step, schedule state,
                           history line count, optimizer settings, and the size and SHA-256 of the
                           two tensor files, checked before any load); checkpoints/latest names the
                           newest; the two newest are kept (train/checkpoint.py writes them).
                           epoch-NNNN-step-SSSSSSSS/: a checkpoint inside epoch NNNN+1, written
                           when a signal stops the run (state.json's "mid_epoch" says where)
      snapshots/cycle-NN/  schedule.name=snapshot: the weights at the end of each cosine cycle
                           (model.safetensors, state.json with the epoch and its checksum)
      best/                train.keep=best or both: the weights of the epoch with the best validation
                           accuracy so far (model.safetensors, state.json with the epoch and val_acc)
      metrics.csv          one row per epoch: the history's epoch lines as a table
      .lock                the lock a process holds while it writes the run (`hold_run_dir`)
      attempts/<n>/        doctor.mode=fix only: an attempt abandoned to start again with a corrected
                           config (config.yaml, history.jsonl, stats.jsonl, metrics.csv,
                           restart.json: the ids, the keys before and after, the epoch)
      misclassified.npz    the most confident test mistakes: images (uint8), labels, predicted, confidence
      report/              index.html and its PNG figures

history.jsonl, which any training loop can write to have its run read by cnntricks:

    {"kind": "batch", "step": 17, "epoch": 1, "loss": 0.93, "lr": 0.021}
    {"kind": "epoch", "epoch": 1, "train_loss": 0.71, "train_acc": 0.76, "val_loss": 0.45,
     "val_acc": 0.84, "lr": 0.08, "seconds": 8.9, "images_per_second": 6070}
    {"kind": "event", "epoch": 3, "step": 630, "event": "lr_divided", "message": "..."}

Accuracies are fractions in [0, 1]; a non-finite loss is written as null with a `nonfinite`
event. Lines are buffered and appended (with fsync) just before the checkpoint that vouches for
them; the checkpoint records the file's line count, and a resumed run cuts the file back to it,
so an epoch that a kill interrupted is neither lost nor written twice.

Every file is replaced atomically (`write_atomic`): a reader sees the old or the new content,
never a mix, whatever moment a kill lands. One process at a time writes a run: `hold_run_dir`
takes an OS lock (released by the kernel when the process dies, so a stale lock never blocks).
A checkpoint that fails its checksums is skipped for the next older intact one (`find_checkpoint`).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from glob import escape as glob_escape
from pathlib import Path
from typing import Callable

CONFIG, DATA, PREPROCESS, FANCY_PCA = "config.yaml", "data.json", "preprocess.json", "fancy_pca.json"
HISTORY, STATS, SUMMARY, MISCLASSIFIED = "history.jsonl", "stats.jsonl", "summary.json", "misclassified.npz"
CHECKPOINTS, ATTEMPTS, LOCK, TRANSFER = "checkpoints", "attempts", ".lock", "transfer.json"
ENSEMBLE, SWA = "ensemble.json", "swa.json"  # an ensemble directory's record; a weight average's record
SNAPSHOTS = "snapshots"  # schedule.name=snapshot: snapshots/cycle-NN/ (model.safetensors, state.json) per cycle
BEST = "best"  # train.keep=best|both: the best validation epoch's weights (model.safetensors, state.json)
METRICS = "metrics.csv"  # one row per epoch: the history's epoch lines as a table
# what a copy of a run needs beside one checkpoint to predict and be diagnosed as the run (rebalance, ensembles)
RUN_FILES = (CONFIG, DATA, PREPROCESS, "preprocess.safetensors", FANCY_PCA, HISTORY, STATS)


def copy_run_files(source: Path, target: Path) -> None:
    """The RUN_FILES `source` has, copied into `target`."""
    for name in RUN_FILES:
        if (Path(source) / name).is_file():
            shutil.copy2(Path(source) / name, Path(target) / name)
CHECKPOINT_FILES = ("model.safetensors", "state.safetensors")  # their size and SHA-256 are in state.json
CHECKPOINT_NAME = re.compile(r"epoch-\d{4,}(-step-\d{8,})?")  # what checkpoints/latest may name
SUMMARY_KEYS = ("test_acc", "test_loss", "test_balanced_acc", "test_macro_f1", "test_shot_acc", "best_val_acc",
                "val_acc", "train_acc", "train_seconds", "epochs", "steps", "images_per_second", "stop_reason",
                "device", "precision", "parameters", "classes", "per_class", "confusion", "restarts", "split_sizes",
                "train_counts", "transfer")


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used as asked (already holds a run, has none to resume, or another
    process is writing it)."""


class DamagedFileError(RunDirectoryError):
    """A file of the run directory is not what it claims to be (truncated, garbage, a pickle, or a
    checksum that does not match): a data problem, never unpickled, never a traceback."""


# ---- writing ----------------------------------------------------------------------------------

def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, content: str | bytes | Callable[[Path], None]) -> Path:
    """Write `path` so that readers see the old or the new content, never a mix.

    `content` is text, bytes, or a function that writes a file at the temporary path it is given
    (a figure, a safetensors file). The temporary file is hidden, in the same folder (the rename
    stays on one file system), named per process, fsynced, then renamed over `path`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _clear_stale(path)
    try:
        if callable(content):
            content(tmp)
        else:
            tmp.write_bytes(content.encode() if isinstance(content, str) else content)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _clear_stale(path: Path) -> None:
    """Remove the temporary files of `path` that killed processes left (SIGKILL runs no cleanup)."""
    for stale in path.parent.glob(f".{glob_escape(path.name)}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def save_tensors(tensors: dict, path: str | Path, metadata: dict | None = None) -> None:
    """safetensors' save_file, with its I/O failures (a full disk) raised as the OSError they are."""
    from safetensors.torch import save_file
    try:
        save_file(tensors, str(path), metadata)
    except Exception as err:  # SafetensorError: "... I/O error: No space left on device (os error 28)"
        found = re.search(r"os error (\d+)", str(err))
        if found is None:
            raise
        number = int(found.group(1))
        raise OSError(number, os.strerror(number), str(path)) from None


def load_tensors(path: str | Path) -> dict:
    """A safetensors file's tensors; a file that is not one (truncated, garbage, a pickle) is a
    DamagedFileError, and is never unpickled."""
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError, or the OSError of a vanished file
        raise DamagedFileError(f"{path} is not a readable safetensors file ({err})") from None


def write_json(path: str | Path, value, indent: int | None = 2) -> Path:
    return write_atomic(path, json.dumps(value, indent=indent))


_HELD: dict[str, list] = {}  # resolved run directory -> [lock file descriptor, nesting depth]


def lock_holder(run_dir: str | Path) -> str | None:
    """The pid of another process holding `run_dir`'s lock, or None (free, or held by this process)."""
    path = Path(run_dir) / LOCK
    if str(Path(run_dir).resolve()) in _HELD or not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # released with the descriptor
    except OSError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)


def in_use_error(run_dir: Path, holder: str) -> RunDirectoryError:
    return RunDirectoryError(f"{run_dir} is in use by another cnntricks process (pid {holder}); wait for it "
                             f"to finish or stop it, or choose another --run-dir")


@contextmanager
def hold_run_dir(run_dir: str | Path):
    """Create `run_dir` if needed and hold its lock while the block runs; re-entrant in one process.

    The lock is an exclusive `flock` on `run_dir/.lock`, which also holds the holder's pid: a second
    process gets a RunDirectoryError naming it, at once. The kernel releases the lock when its
    process dies, however it dies, so a stale lock never blocks. When the block raises an Exception
    (a configuration or data error before anything was trained), a directory this call created is
    removed again if it holds nothing but what a start writes (no history, no checkpoint).
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield run_dir
        finally:
            _HELD[key][1] -= 1
        return
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise in_use_error(run_dir, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]
    try:
        yield run_dir
    except Exception:
        if created and not (run_dir / HISTORY).exists() and not (run_dir / CHECKPOINTS).exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing trained: leave no half-made run behind
        raise
    finally:
        del _HELD[key]
        os.close(fd)  # releases the lock


def _clean(value):
    # JSON has no NaN or infinity; a diverged loss is written as null (with a "nonfinite" event).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlWriter:
    """Lines buffered in memory and appended (with fsync) at `flush`, which returns the file's line
    count for the checkpoint; `truncate` cuts the file back to such a count on resume. Writes
    history.jsonl and stats.jsonl."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.pending: list[str] = []
        self.lines = 0
        if self.path.exists():
            with self.path.open("rb") as f:  # bytes: a kill may have cut a character in half
                self.lines = sum(1 for _ in f)

    def add_line(self, record: dict, compact: bool = False) -> None:
        self.pending.append(json.dumps(record, separators=(",", ":") if compact else None))

    def flush(self) -> int:
        """Append the pending lines and fsync; returns the file's line count."""
        if self.pending:
            with self.path.open("ab") as f:
                size = f.tell()
                try:
                    f.write(("\n".join(self.pending) + "\n").encode())
                    f.flush()
                    os.fsync(f.fileno())
                except BaseException:  # a full disk: no partial line may stay behind
                    f.truncate(size)
                    raise
            self.lines += len(self.pending)
            self.pending = []
        return self.lines

    def truncate(self, lines: int) -> int:
        """Keep the first `lines` lines (those a checkpoint vouches for); rewrite atomically.

        Whatever the file's state: longer (a kill after the checkpoint), ending in a partial line (cut
        off, then never appended to), shorter or missing (damaged, deleted). Returns how many of the
        vouched-for lines are missing (0 when the file was whole), and warns when some are.
        """
        whole = self.path.read_bytes().splitlines(keepends=True) if self.path.exists() else None
        kept = (whole or [])[:lines]
        if kept and not kept[-1].endswith(b"\n"):
            kept.pop()  # a line a kill cut short: never append onto it
        if whole is None or len(kept) != len(whole):
            write_atomic(self.path, b"".join(kept))
        self.lines, self.pending = len(kept), []
        missing = lines - len(kept)
        if missing:
            warnings.warn(f"{self.path} holds {len(kept)} complete lines of the {lines} the checkpoint vouches "
                          f"for; the records of {missing} lines are lost, and the run goes on from the checkpoint")
        return missing


class HistoryWriter(JsonlWriter):
    """history.jsonl: `add(kind, **values)` with kind batch, epoch or event."""

    def add(self, kind: str, **values) -> None:
        self.add_line({"kind": kind, **{k: _clean(v) for k, v in values.items()}})


# ---- reading ----------------------------------------------------------------------------------

def read_jsonl(path: Path, missing: str, skipped: list[str] | None = None) -> list[dict]:
    """Every JSON object of a .jsonl file, in file order; `missing` is the error's advice.

    A line that is not a JSON object (a run killed while writing cuts the last one short; another
    tool or a damaged disk may leave one anywhere) is left out: never a crash. Each one but a
    cut-off last line is described in `skipped` when a list is given, so a reader can say how much
    it could not read (the doctor does).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {missing}")
    # errors="replace": a kill can also cut a multi-byte character in half
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    last = max((number for number, line in enumerate(lines, start=1) if line.strip()), default=0)
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif skipped is not None and number != last:
            skipped.append(f"{path.name}, line {number}: not a JSON object ({line[:60]!r})")
    return records


def read_history(run_dir: str | Path, skipped: list[str] | None = None) -> list[dict]:
    """Every record of `<run_dir>/history.jsonl`, in file order (see `read_jsonl`)."""
    return read_jsonl(Path(run_dir) / HISTORY, f"is '{run_dir}' a run directory written by the trainer?", skipped)


def split_history(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(batch records, epoch records); other kinds (events) are left out."""
    return ([r for r in records if r.get("kind") == "batch"],
            [r for r in records if r.get("kind") == "epoch"])


def stats_path(path: str | Path) -> Path:
    """`path` itself, or `<path>/stats.jsonl` when `path` is a (run) directory."""
    path = Path(path)
    return path / STATS if path.is_dir() else path


def read_stats(path: str | Path, skipped: list[str] | None = None) -> list[dict]:
    """Every record of a stats file (or of `<run_dir>/stats.jsonl`), in file order (see `read_jsonl`)."""
    return read_jsonl(stats_path(path), skipped=skipped, missing="the trainer writes it when train.monitor is every:N "
                      "(the default), not with train.monitor=off")


def read_json(path: str | Path) -> dict | None:
    """A JSON file's content, or None when it does not exist; a damaged one is a DamagedFileError."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise DamagedFileError(f"{path} is damaged: not valid JSON ({err}); restore it from a copy, or start "
                               f"the run again") from None


# ---- checkpoints: found newest first, each verified before it is used ---------------------------

def file_digest(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_files(folder: Path) -> dict:
    """{file: {"bytes", "sha256"}} of a checkpoint's tensor files, for its state.json."""
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": file_digest(folder / name)}
            for name in CHECKPOINT_FILES}


def checkpoint_problem(folder: Path, weights_only: bool = False) -> str | None:
    """What is wrong with a checkpoint folder, or None when it is intact.

    state.json must be a JSON object, and each tensor file must have the size and SHA-256 it
    records. A checkpoint written before the checksums existed is checked by its safetensors
    header instead (a pickle or garbage has none). `weights_only`: only model.safetensors is
    needed (what the doctor and the report read; another loop may write nothing else).
    """
    try:
        state = json.loads((folder / "state.json").read_bytes())
    except (OSError, ValueError, RecursionError) as err:  # missing, unreadable, not JSON
        if not weights_only:
            return "state.json is missing" if isinstance(err, FileNotFoundError) else \
                f"state.json is not valid JSON ({err})"
        state = {}  # the weights alone are checked, by their header
    if not weights_only and (not isinstance(state, dict) or not isinstance(state.get("epoch"), int)):
        return "state.json is not a checkpoint's state (no epoch)"
    recorded = state.get("files") if isinstance(state, dict) and isinstance(state.get("files"), dict) else {}
    for name in CHECKPOINT_FILES[:1] if weights_only else CHECKPOINT_FILES:
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        expected = recorded.get(name)
        if isinstance(expected, dict):
            if path.stat().st_size != expected.get("bytes"):
                return f"{name} has {path.stat().st_size} bytes, not the {expected.get('bytes')} it was written with"
            if file_digest(path) != expected.get("sha256"):
                return f"{name} does not match its SHA-256 checksum"
        elif (problem := _safetensors_problem(path)) is not None:
            return f"{name} {problem}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """None when the file has a well-formed safetensors header that fits its size."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= length <= size - 8:
            return "is not a safetensors file"
        try:
            header = json.loads(f.read(length))
            ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            return "is not a safetensors file"
    return None if 8 + length + max(ends, default=0) == size else "is cut short (or has bytes after its data)"


def checkpoint_folders(run_dir: str | Path) -> list[Path]:
    """Checkpoint folders, newest first: the one `checkpoints/latest` names (when it names a folder of
    this run's own checkpoints/), then the others by name. Unverified: see `find_checkpoint`."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    folders = sorted((p for p in root.iterdir() if CHECKPOINT_NAME.fullmatch(p.name) and p.is_dir()
                      and not p.is_symlink()), reverse=True)
    try:
        named = (root / "latest").read_text().strip()
    except (OSError, UnicodeDecodeError):
        named = ""
    pointed = [p for p in folders if p.name == named]
    return pointed + [p for p in folders if p.name != named]


def latest_checkpoint(run_dir: str | Path, weights_only: bool = False) -> Path | None:
    """The newest intact checkpoint folder, or None (damaged ones are passed over in silence);
    `weights_only`: the newest whose model.safetensors is intact (see `checkpoint_problem`)."""
    return next((folder for folder in checkpoint_folders(run_dir)
                 if checkpoint_problem(folder, weights_only) is None), None)


def find_checkpoint(run_dir: str | Path, purpose: str = "using") -> Path | None:
    """The newest intact checkpoint, warning about each damaged one passed over; None when the run has
    no checkpoint; a DamagedFileError when it has some but none is intact."""
    damaged = []
    for folder in checkpoint_folders(run_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            for name, why in damaged:
                warnings.warn(f"checkpoint {name} of {run_dir} is damaged ({why}); {purpose} the older "
                              f"intact {folder.name} instead")
            return folder
        damaged.append((folder.name, problem))
    if damaged:
        raise DamagedFileError(f"no intact checkpoint in {Path(run_dir) / CHECKPOINTS}: "
                               + "; ".join(f"{name}: {why}" for name, why in damaged)
                               + "; start the run again (or restore the files from a copy)")
    return None


def natural_key(name: str) -> list:
    """'stages.10.0' after 'stages.2.0': digits compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def first_conv_weight(model_file: str | Path, channels: int | None = None, min_kernel: int = 1):
    """(name, (out, in, kH, kW) float32 numpy array) of the first convolution in a checkpoint's
    model.safetensors, or None when it has no 4-D weight or its kernel is smaller than `min_kernel`
    (then nothing but the file's header is read).

    safetensors stores tensors sorted by name, not in state-dict order, so "first" is recovered:
    the 4-D weights that read the image's `channels` (when known), the lowest in natural name order
    (every model of the zoo names its first conv stages.0.0.weight).
    """
    from safetensors import safe_open
    with safe_open(str(model_file), framework="pt") as tensors:
        shapes = {name: tensors.get_slice(name).get_shape() for name in tensors.keys()}
        convs = sorted((n for n, s in shapes.items() if len(s) == 4 and n.endswith("weight")), key=natural_key)
        if not convs:
            return None
        reading_image = [n for n in convs if shapes[n][1] == channels]
        name = (reading_image or convs)[0]
        if min(shapes[name][2:]) < min_kernel:
            return None
        return name, tensors.get_tensor(name).float().numpy()


# ---- attempts/: the runs doctor.mode=fix abandoned -------------------------------------------

def read_restarts(run_dir: str | Path) -> list[dict]:
    """The restart events of the attempts this run abandoned, oldest first (attempts/<n>/restart.json)."""
    folder = Path(run_dir) / ATTEMPTS
    files = sorted(folder.glob("*/restart.json"), key=lambda p: int(p.parent.name)) if folder.is_dir() else []
    return [json.loads(path.read_text()) for path in files]


def archive_attempt(run_dir: str | Path, event: dict) -> Path:
    """Keep the abandoned attempt's files in attempts/<n>/ and clear the run directory for the next.

    Kill-safe in this order: the copy is complete before its folder gets its final name, and the
    checkpoints leave by one rename. A kill before that rename resumes the old attempt from its
    checkpoint; after it, a resume finds no checkpoint and starts the old config again, which
    meets the same fault and restarts again: slower, never corrupt.
    """
    run_dir = Path(run_dir)
    folder = run_dir / ATTEMPTS
    folder.mkdir(exist_ok=True)
    number = 1 + max((int(p.name) for p in folder.iterdir() if p.name.isdigit()), default=0)
    partial = folder / f".{number}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for name in (CONFIG, HISTORY, STATS, SUMMARY, METRICS):  # summary: a resumed run's
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, partial / name)
    write_json(partial / "restart.json", {**event, "attempt": number}, indent=1)
    partial.rename(folder / str(number))
    if (run_dir / CHECKPOINTS).is_dir():
        doomed = folder / f".{number}.checkpoints"
        (run_dir / CHECKPOINTS).rename(doomed)
        shutil.rmtree(doomed)
    (run_dir / SUMMARY).unlink(missing_ok=True)  # the new attempt is a new run, not a finished one
    (run_dir / METRICS).unlink(missing_ok=True)  # its table starts with its own first epoch
    shutil.rmtree(run_dir / BEST, ignore_errors=True)  # the abandoned attempt's best epoch is not the new one's
    return folder / str(number)


# ---- a finished (or running) run, read lazily --------------------------------------------------

@dataclass
class Run:
    """A run directory's files, each read on first use. Missing files give None or [] where the
    run can do without them; `history` raises FileNotFoundError (with advice) when it is absent."""
    path: Path

    def __post_init__(self):
        self.path = Path(self.path)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @cached_property
    def config(self) -> dict | None:
        """config.yaml as plain sections (cnntricks.config.from_dict makes it a Config)."""
        import yaml
        file = self.path / CONFIG
        if not file.is_file():
            return None
        try:
            value = yaml.safe_load(file.read_bytes().decode("utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise DamagedFileError(f"{file} is damaged: not readable YAML ({err})") from None
        if not isinstance(value, dict):
            raise DamagedFileError(f"{file} is damaged: a YAML {type(value).__name__}, not the config's sections")
        return value

    @cached_property
    def data(self) -> dict | None:
        return read_json(self.path / DATA)

    @cached_property
    def summary(self) -> dict | None:
        return read_json(self.path / SUMMARY)

    @cached_property
    def records(self) -> list[dict]:
        return read_history(self.path)

    @cached_property
    def history(self) -> tuple[list[dict], list[dict], list[dict]]:
        """(batches, epochs, events)."""
        batches, epochs = split_history(self.records)
        return batches, epochs, [r for r in self.records if r.get("kind") == "event"]

    @cached_property
    def stats(self) -> list[dict]:
        """stats.jsonl's records; [] without the file (train.monitor=off, or another loop)."""
        return read_stats(self.path) if (self.path / STATS).is_file() else []

    @property
    def has_stats(self) -> bool:
        return (self.path / STATS).is_file()

    @cached_property
    def classes(self) -> list[str]:
        for source in (self.summary, self.data):
            if source and source.get("classes"):
                return [str(c) for c in source["classes"]]
        return []

    @property
    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint with intact weights (all a reader of the run needs)."""
        return latest_checkpoint(self.path, weights_only=True)
