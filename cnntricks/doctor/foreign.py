"""Other tools' training logs as the doctor's history: Lightning's CSVLogger (`metrics.csv`, in
`lightning_logs/version_N/`), Keras' CSVLogger (`training.log`) and TensorBoard log directories (any
writer's event files: Lightning's TensorBoardLogger, Keras' TensorBoard callback, a SummaryWriter in
a plain loop, cnntricks' train.tensorboard), read into the batch and epoch records of history.jsonl
(cnntricks/rundir.py) so that every check runs on them. TensorBoard's tags are looked for in TAGS.

The formats, as those libraries document and write them:

  Keras      CSVLogger(filename, separator=",", append=False): a header `epoch,<metric>,...` with the
             logs' keys sorted, then one row per epoch, `epoch` counting from 0
             (`epoch,accuracy,loss,val_accuracy,val_loss`; older Keras: `acc`, `val_acc`; a
             `learning_rate` column when a schedule logs it).
  Lightning  CSVLogger: `metrics.csv` with a header of every key logged plus `epoch` and `step`, and
             one row per logging call, the cells of keys not logged in that call empty. A key logged
             with on_step=True and on_epoch=True appears twice: `<key>_step` on each logged step and
             `<key>_epoch` once per epoch; `self.log("val_loss", ...)` in validation lands once per
             epoch. `step` is the global step (counting from 0), `epoch` counts from 0.

What the doctor needs, and the names it looks for (the first present wins; `--map` names others):

  loss       the per-batch training loss   train_loss_step, loss_step, train/loss_step, train_loss
                                           (Lightning rows logged per step), loss (Lightning)
  train_loss the epoch's training loss     train_loss_epoch, loss_epoch, train/loss_epoch, loss (Keras),
                                           train_loss
  train_acc  the epoch's training accuracy train_acc_epoch, train_accuracy_epoch, acc_epoch, accuracy,
                                           acc, train_acc, train_accuracy, train/acc, train/accuracy
  val_loss   the validation loss           val_loss, valid_loss, validation_loss, val/loss
  val_acc    the validation accuracy       val_acc, val_accuracy, valid_acc, validation_accuracy,
                                           val/acc, val/accuracy
  lr         the learning rate             lr, learning_rate, lr-SGD, lr-Adam, lr-AdamW (Lightning's
                                           LearningRateMonitor), lr_step

Accuracies logged in percent (any value above 1) are divided by 100. A NaN or infinite loss becomes
null, as the trainer writes one. Nothing else about the run is known (no config, no data.json, no
layer statistics): the checks that need them say what they could not check, and the class count is
inferred from the first loss or the accuracy at chance (`Evidence.class_count`).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from cnntricks.registry import Registry

FORMATS = Registry("training-log format")

NAMES = {
    "loss": ("train_loss_step", "loss_step", "train/loss_step"),
    "train_loss": ("train_loss_epoch", "loss_epoch", "train/loss_epoch", "loss", "train_loss"),
    "train_acc": ("train_acc_epoch", "train_accuracy_epoch", "acc_epoch", "accuracy", "acc", "train_acc",
                  "train_accuracy", "train/acc", "train/accuracy"),
    "val_loss": ("val_loss", "valid_loss", "validation_loss", "val/loss"),
    "val_acc": ("val_acc", "val_accuracy", "valid_acc", "validation_accuracy", "val/acc", "val/accuracy"),
    "lr": ("lr", "learning_rate", "lr-SGD", "lr-Adam", "lr-AdamW", "lr_step"),
}
# TensorBoard tags: cnntricks' own (train.tensorboard), PyTorch's tutorial ("Loss/train"), Lightning's
# TensorBoardLogger (the names logged), Keras' TensorBoard callback (train/ and validation/ folders)
TAGS = {
    "loss": ("batch/loss", "train_loss_step", "loss_step", "train/loss_step", "Loss/train", "train/loss",
             "batch_loss", "train_loss", "loss"),
    "train_loss": ("epoch/train_loss", "train_loss_epoch", "loss_epoch", "train/epoch_loss", "epoch_loss"),
    "train_acc": ("epoch/train_acc", "train_acc_epoch", "train_acc", "train_accuracy", "Accuracy/train",
                  "train/acc", "train/accuracy", "train/epoch_accuracy", "epoch_accuracy"),
    "val_loss": ("epoch/val_loss", "val_loss", "valid_loss", "Loss/val", "Loss/validation", "Loss/test", "val/loss",
                 "validation/epoch_loss"),
    "val_acc": ("epoch/val_acc", "val_acc", "val_accuracy", "valid_acc", "Accuracy/val", "Accuracy/validation",
                "Accuracy/test", "val/acc", "val/accuracy", "validation/epoch_accuracy"),
    "lr": ("batch/lr", "lr", "learning_rate", "lr-SGD", "lr-Adam", "lr-AdamW", "train/learning_rate"),
}
KEYS = tuple(NAMES)
ACCURACIES = ("train_acc", "val_acc")


class ForeignLogError(ValueError):
    """A file that is not one of the formats, or lacks what the doctor needs."""


def parse_map(text: str | None) -> dict[str, str]:
    """`--map loss=train/loss,val_acc=valid/accuracy` as {our key: their name}."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        key, sep, name = item.partition("=")
        key, name = key.strip(), name.strip()
        if not sep or not name:
            raise ForeignLogError(f"--map: '{item}' is not KEY=NAME (for example val_acc=valid/accuracy)")
        if key not in KEYS:
            raise ForeignLogError(f"--map: '{key}' is not one of the doctor's keys ({', '.join(KEYS)})")
        mapping[key] = name
    return mapping


def value(cell: str | None) -> float | None:
    """A CSV cell as a float; None when empty; NaN and infinity as NaN (a non-finite loss)."""
    if cell is None or cell.strip() == "":
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def column_for(key: str, header: list[str], mapping: dict[str, str], names: tuple[str, ...] | None = None) -> str | None:
    if key in mapping:
        if mapping[key] not in header:
            raise ForeignLogError(f"--map {key}={mapping[key]}: no column '{mapping[key]}' (columns: "
                                  f"{', '.join(header)})")
        return mapping[key]
    return next((name for name in (names or NAMES[key]) if name in header), None)


def clean(key: str, number: float | None) -> float | None:
    """A loss: NaN and infinity become None (non-finite); an accuracy in percent becomes a fraction."""
    if number is None:
        return None
    if not math.isfinite(number):
        return None
    if key in ACCURACIES and number > 1:
        return number / 100
    return number


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            sample = f.read(4096)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            reader = csv.DictReader(f, dialect=dialect)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError) as err:
        raise ForeignLogError(f"cannot read {path}: {err}") from None
    if "epoch" not in header:
        raise ForeignLogError(f"{path} has no 'epoch' column (columns: {', '.join(header) or 'none'}): not a Keras or "
                              f"Lightning CSVLogger file")
    return header, rows


@FORMATS.register("keras")
def read_keras(path: Path, mapping: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """Keras' CSVLogger: one row per epoch, epoch from 0 -> epoch records only."""
    header, rows = read_rows(path)
    columns = {key: column_for(key, header, mapping) for key in KEYS if key != "loss"}
    epochs = []
    for row in rows:
        number = value(row.get("epoch"))
        if number is None:
            continue
        record = {"kind": "epoch", "epoch": int(number) + 1}
        for key, name in columns.items():
            if name is not None:
                record[key] = clean(key, value(row.get(name)))
        if len(record) > 2:  # an epoch with something the doctor reads
            epochs.append(record)
    return [], epochs


@FORMATS.register("lightning")
def read_lightning(path: Path, mapping: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """Lightning's CSVLogger: per-step rows give batch records (step + 1, as the trainer counts), and each
    epoch's epoch-level values (the last logged in that epoch) give its epoch record."""
    header, rows = read_rows(path)
    step_loss = column_for("loss", header, mapping)
    if step_loss is None and "loss" not in mapping and "step" in header:
        # `self.log("train_loss", loss)` in training_step logs per step only, under its plain name
        step_loss = next((n for n in ("train_loss", "loss", "train/loss") if n in header), None)
    epoch_names = {key: column_for(key, header, mapping) for key in ("train_loss", "train_acc", "val_loss", "val_acc")}
    if epoch_names["train_loss"] == step_loss:
        epoch_names["train_loss"] = None  # per-step only: the epoch mean is not logged
    lr = column_for("lr", header, mapping)
    batches, by_epoch = [], {}
    for row in rows:
        epoch, step = value(row.get("epoch")), value(row.get("step"))
        if epoch is None:
            continue
        epoch = int(epoch)
        if step is not None and step_loss is not None and value(row.get(step_loss)) is not None:
            loss = value(row.get(step_loss))
            batches.append({"kind": "batch", "step": int(step) + 1, "epoch": epoch + 1,
                            "loss": None if not math.isfinite(loss) else loss,
                            **({"lr": value(row.get(lr))} if lr and value(row.get(lr)) is not None else {})})
        record = by_epoch.setdefault(epoch, {"kind": "epoch", "epoch": epoch + 1})
        for key, name in epoch_names.items():
            if name is not None and value(row.get(name)) is not None:
                record[key] = clean(key, value(row.get(name)))
        if lr and value(row.get(lr)) is not None:
            record["lr"] = value(row.get(lr))
    epochs = [by_epoch[e] for e in sorted(by_epoch) if len(by_epoch[e]) > 2]
    return batches, epochs


def event_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of the TensorBoard event files in `folder` and its sub-folders (Keras writes
    train/ and validation/: their tags become train/<tag> and validation/<tag>), read with TensorBoard's
    own EventAccumulator."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise ForeignLogError("reading TensorBoard event files needs the tensorboard package: pip install "
                              "tensorboard (or pip install 'cnntricks[tensorboard]')") from None
    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted({p.parent for p in folder.rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        prefix = events.relative_to(folder).as_posix()
        for tag in accumulator.Tags()["scalars"]:
            name = tag if prefix == "." else f"{prefix}/{tag}"
            scalars.setdefault(name, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return {tag: sorted(dict(values).items()) for tag, values in scalars.items()}  # a purged step: its last value


@FORMATS.register("tensorboard")
def read_tensorboard(path: Path, mapping: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """A TensorBoard log directory: the per-step loss (and LR) as batch lines; each epoch-level tag's values
    in step order as epochs 1, 2, ... (logged once an epoch, whatever its step axis counts)."""
    scalars = event_scalars(path)
    tags = sorted(scalars)
    chosen = {key: column_for(key, tags, mapping, TAGS[key]) for key in KEYS}
    if chosen["train_loss"] == chosen["loss"]:
        chosen["train_loss"] = None
    batches = []
    if chosen["loss"] is not None:
        offset = 1 if scalars[chosen["loss"]][0][0] == 0 else 0  # steps counted from 0: the trainer's from 1
        lr = dict(scalars[chosen["lr"]]) if chosen["lr"] is not None else {}
        for step, loss in scalars[chosen["loss"]]:
            batches.append({"kind": "batch", "step": step + offset, "loss": loss if math.isfinite(loss) else None,
                            **({"lr": lr[step]} if step in lr else {})})
    epochs: dict[int, dict] = {}
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        if chosen[key] is not None:
            for number, (_, number_value) in enumerate(scalars[chosen[key]], 1):
                epochs.setdefault(number, {"kind": "epoch", "epoch": number})[key] = clean(key, number_value)
    return batches, [epochs[n] for n in sorted(epochs)]


def detect(path: Path) -> tuple[str, Path]:
    """(format, the file) of a foreign log: a TensorBoard log directory (event files in it or under it), a
    Lightning version folder (its metrics.csv), a metrics.csv with a `step` column (Lightning), any other
    CSV file with an `epoch` column (Keras)."""
    if path.is_dir():
        if (path / "metrics.csv").is_file():
            return "lightning", path / "metrics.csv"
        if next(path.rglob("events.out.tfevents.*"), None) is not None:
            return "tensorboard", path
        raise ForeignLogError(f"{path} holds neither history.jsonl (a cnntricks run), metrics.csv (a Lightning "
                              f"CSVLogger version folder) nor TensorBoard event files; name a Keras CSVLogger file "
                              f"itself")
    if not path.is_file():
        raise ForeignLogError(f"{path} does not exist")
    header, _ = read_rows(path)
    return ("lightning" if "step" in header else "keras"), path


def read_foreign(path: str | Path, mapping: dict[str, str] | None = None) -> tuple[str, list[dict], list[dict]]:
    """(format, batch records, epoch records) of a foreign training log."""
    kind, file = detect(Path(path))
    batches, epochs = FORMATS.get(kind)(file, mapping or {})
    if not batches and not epochs:
        raise ForeignLogError(f"{file} ({kind} CSVLogger) holds no loss or accuracy the doctor knows by name; "
                              f"name the columns with --map (for example --map train_loss=my_loss,val_acc=my_acc)")
    return kind, batches, epochs
