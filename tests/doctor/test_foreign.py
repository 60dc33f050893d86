"""The doctor on other tools' logs: Keras' CSVLogger file and Lightning's CSVLogger metrics.csv, written
here exactly as those libraries write them (their CSVLogger code: Keras sorts the logs' keys after
`epoch` and writes one row per epoch from 0, "nan" for NaN; Lightning writes one row per logging call
with `epoch` and `step` and empty cells for keys not logged in it, `<key>_step` / `<key>_epoch` for a
key logged on both), read into history records, diagnosed, and named by --map where the names differ."""
from __future__ import annotations

import csv
import math

import pytest

from cnntricks.doctor import diagnose
from cnntricks.doctor.foreign import ForeignLogError, parse_map, read_foreign


def keras_log(path, rows, keys=("accuracy", "loss", "val_accuracy", "val_loss")):
    """keras.callbacks.CSVLogger: fieldnames ["epoch"] + sorted(logs), a row per epoch, str(float) cells."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", *sorted(keys)], lineterminator="\n")
        writer.writeheader()
        for epoch, row in enumerate(rows):
            writer.writerow({"epoch": epoch, **{k: str(float(v)) for k, v in row.items()}})
    return path


def lightning_version(folder, epochs, loss_at, val_acc_at, train_acc_at=None, steps_per_epoch=50, log_every=10):
    """lightning.pytorch.loggers.CSVLogger's metrics.csv for self.log("train_loss", loss, on_step=True,
    on_epoch=True) in training_step, self.log("val_acc"), self.log("val_loss") in validation_step."""
    folder.mkdir(parents=True)
    keys = ["epoch", "step", "train_loss_epoch", "train_loss_step", "val_acc", "val_loss", "train_acc_epoch"]
    with (folder / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        step = -1
        for epoch in range(epochs):
            losses = []
            for _ in range(steps_per_epoch):
                step += 1
                losses.append(loss_at(step))
                if (step + 1) % log_every == 0:
                    writer.writerow({"epoch": epoch, "step": step, "train_loss_step": losses[-1]})
            writer.writerow({"epoch": epoch, "step": step, "val_acc": val_acc_at(epoch), "val_loss": 1.0})
            writer.writerow({"epoch": epoch, "step": step, "train_loss_epoch": sum(losses) / len(losses),
                             **({"train_acc_epoch": train_acc_at(epoch)} if train_acc_at else {})})
    (folder / "hparams.yaml").write_text("lr: 0.1\n")
    return folder


def alarms(findings):
    return {f.id for f in findings if f.severity in ("warning", "error")}


def test_a_keras_log_becomes_epoch_records_from_epoch_1(tmp_path):
    log = keras_log(tmp_path / "training.log", [{"accuracy": 0.5, "loss": 1.4, "val_accuracy": 0.55, "val_loss": 1.3},
                                                {"accuracy": 72.0, "loss": 0.9, "val_accuracy": 70.0, "val_loss": 0.95}])
    kind, batches, epochs = read_foreign(log)
    assert kind == "keras" and batches == []
    assert epochs[0] == {"kind": "epoch", "epoch": 1, "train_loss": 1.4, "train_acc": 0.5, "val_loss": 1.3,
                         "val_acc": 0.55}
    assert epochs[1]["train_acc"] == pytest.approx(0.72) and epochs[1]["val_acc"] == pytest.approx(0.70)  # percent


def test_a_healthy_keras_run_has_no_alarm_and_a_diverged_one_is_found(tmp_path):
    healthy = keras_log(tmp_path / "healthy.log",
                        [{"accuracy": 0.6 + 0.03 * e, "loss": 1.2 * math.exp(-e / 3) + 0.3,
                          "val_accuracy": 0.58 + 0.028 * e, "val_loss": 1.25 * math.exp(-e / 3) + 0.33} for e in range(10)])
    assert alarms(diagnose(healthy)) == set()
    diverged = keras_log(tmp_path / "diverged.log",
                         [{"accuracy": 0.3, "loss": 2.0, "val_accuracy": 0.35, "val_loss": 1.9},
                          {"accuracy": 0.1, "loss": math.nan, "val_accuracy": 0.1, "val_loss": math.nan}])
    assert (tmp_path / "diverged.log").read_text().splitlines()[2].split(",")[2] == "nan"  # as Keras writes NaN
    found = diagnose(diverged)
    assert {"lr_diverged", "nonfinite"} <= alarms(found)
    assert next(f for f in found if f.id == "nonfinite").epoch == 2


def test_a_lightning_version_folder_gives_batches_and_epochs_and_its_faults(tmp_path):
    flat = lightning_version(tmp_path / "lightning_logs" / "version_3", 4, lambda s: 2.3026 - 0.0002 * s,
                             lambda e: 0.1, lambda e: 0.1)
    kind, batches, epochs = read_foreign(flat)
    assert kind == "lightning" and [b["step"] for b in batches[:2]] == [10, 20]  # global step + 1
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4] and epochs[0]["val_acc"] == 0.1
    found = diagnose(flat)
    assert "lr_too_low" in alarms(found) and "at_chance" in {f.id for f in found}
    chance = next(f for f in found if f.id == "at_chance")
    assert "(10 classes, inferred from the loss it settled at" in chance.evidence  # no data.json: C from ln C

    learning = lightning_version(tmp_path / "good", 8, lambda s: 2.0 * math.exp(-s / 60) + 0.35,  # learned, levelled
                                 lambda e: 0.86 - 0.3 * math.exp(-1.5 * e), lambda e: 0.88 - 0.3 * math.exp(-1.5 * e))
    assert alarms(diagnose(learning)) == set()


def test_a_loss_that_never_left_ln_c_is_not_read_as_too_big_a_step(tmp_path):
    """A zero-initialized net in a plain loop: the loss wanders around ln 10 by a fraction of a percent, ending
    a hair above its start. That is no sign of too big a step (a rise needs 5%, STALL_GAIN); the advice
    names what stops every gradient, the initialization."""
    wander = lightning_version(tmp_path / "zero_init", 5, lambda s: 2.3026 + 0.004 * math.sin(s / 7) + 2e-5 * s,
                               lambda e: 0.099, lambda e: 0.1, log_every=1)
    chance = next(f for f in diagnose(wander) if f.id == "at_chance")
    assert chance.severity == "error" and "divide the learning rate" not in chance.advice
    assert "the loss never left its starting value: check the initialization" in chance.advice
    assert chance.change == {}  # another loop's run: no config to change
    risen = lightning_version(tmp_path / "risen", 5, lambda s: 2.3026 * (1 + s / 250), lambda e: 0.1, lambda e: 0.1,
                              log_every=1)
    assert "the steps were too big" in next(f for f in diagnose(risen) if f.id == "at_chance").advice


def test_a_run_that_learned_nothing_reads_its_class_count_from_the_loss_it_settled_at(tmp_path):
    """PyTorch's default init starts the loss above ln C (2.7 on 10 classes: C read as 15, chance 6.7%, and
    11% was not at chance); the level a run that learned nothing settles at is ln C (the class prior's loss)."""
    stuck = lightning_version(tmp_path / "shuffled", 5, lambda s: 2.3026 + 0.4 * math.exp(-s / 8), lambda e: 0.11,
                              lambda e: 0.115, log_every=1)
    found = diagnose(stuck)
    chance = next(f for f in found if f.id == "at_chance")
    assert "(10 classes, inferred from the loss it settled at, 2.3 ≈ ln C)" in chance.evidence
    assert "lr_too_high" not in alarms(found)  # the fall to ln C was the init's logits settling, not big steps
    learned = lightning_version(tmp_path / "learned", 5, lambda s: 0.4 + 2.3 * math.exp(-s / 40),
                                lambda e: 0.5 + 0.08 * e, lambda e: 0.52 + 0.08 * e, log_every=1)
    from cnntricks.doctor.evidence import load_evidence
    assert load_evidence(learned).class_count[1] == "inferred from the first loss 2.7 ≈ ln C"  # it moved: first loss


def test_a_model_too_small_in_another_loop_is_underfitting_with_the_inferred_class_count(tmp_path):
    small = lightning_version(tmp_path / "small", 5, lambda s: 1.9 + 0.4 * math.exp(-s / 30), lambda e: 0.28 + 0.01 * e,
                              lambda e: 0.29 + 0.01 * e, log_every=1)
    underfitting = next(f for f in diagnose(small) if f.id == "underfitting")
    assert underfitting.severity == "warning" and "(chance 10%)" in underfitting.evidence
    assert underfitting.change == {}  # no config to widen


def test_map_names_other_columns_and_bad_input_says_what_to_do(tmp_path):
    log = tmp_path / "custom.csv"
    log.write_text("epoch,my_loss,my_val\n0,1.5,0.4\n1,1.0,0.6\n2,0.8,0.7\n")
    with pytest.raises(ForeignLogError, match="--map"):
        read_foreign(log)
    _, _, epochs = read_foreign(log, parse_map("train_loss=my_loss,val_acc=my_val"))
    assert [(e["train_loss"], e["val_acc"]) for e in epochs] == [(1.5, 0.4), (1.0, 0.6), (0.8, 0.7)]
    with pytest.raises(ForeignLogError, match="not one of the doctor's keys"):
        parse_map("accuracy=acc")
    with pytest.raises(ForeignLogError, match="no column 'nope'"):
        read_foreign(log, parse_map("val_acc=nope"))
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ForeignLogError, match="no 'epoch' column"):
        read_foreign(tmp_path / "notes.csv")


def test_the_command_line_reads_them(user, tmp_path):
    log = keras_log(tmp_path / "training.log", [{"accuracy": 0.3, "loss": 2.0, "val_accuracy": 0.35, "val_loss": 1.9},
                                                {"accuracy": 0.1, "loss": math.nan, "val_accuracy": 0.1,
                                                 "val_loss": math.nan}])
    result = user.run("doctor", log, "--fail-on", "error")
    assert result.code == 5 and "ERROR   nonfinite: NaN or infinite values (epoch 2)" in result.out
    custom = tmp_path / "custom.csv"
    custom.write_text("epoch,my_loss,my_val\n0,1.5,0.4\n")
    mapped = user.run("doctor", custom, "--map", "train_loss=my_loss,val_acc=my_val", "--json")
    assert mapped.code == 0, mapped
    wrong = user.run("doctor", custom)
    assert wrong.code == 2 and "--map" in wrong.err
    assert user.run("doctor", log, "--report").code == 2  # figures are drawn for cnntricks runs only


def test_tensorboard_log_directories_from_a_plain_loop_and_from_keras(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is a test dependency")
    from torch.utils.tensorboard import SummaryWriter
    plain = tmp_path / "runs" / "exp1"
    with SummaryWriter(plain) as writer:  # PyTorch's tutorial: add_scalar("Loss/train", loss, n_iter)
        for step in range(60):
            loss = 2.3 * 1.15 ** step if step < 40 else math.inf  # diverges
            writer.add_scalar("Loss/train", loss, step)
        for epoch in range(3):
            writer.add_scalar("Accuracy/test", 0.1, epoch)
    kind, batches, epochs = read_foreign(plain)
    assert kind == "tensorboard" and batches[0]["step"] == 1 and batches[-1]["loss"] is None
    assert [e["val_acc"] for e in epochs] == pytest.approx([0.1, 0.1, 0.1])  # float32 in the event file
    assert "lr_diverged" in alarms(diagnose(plain))

    keras = tmp_path / "logs"
    for folder, shift in (("train", 0.0), ("validation", 0.02)):
        with SummaryWriter(keras / folder) as writer:  # keras.callbacks.TensorBoard: epoch_loss, epoch_accuracy
            for epoch in range(10):
                writer.add_scalar("epoch_loss", 1.2 * math.exp(-epoch / 2) + 0.3 + shift, epoch)
                writer.add_scalar("epoch_accuracy", 0.88 - 0.3 * math.exp(-epoch) - shift, epoch)
    kind, batches, epochs = read_foreign(keras)
    assert kind == "tensorboard" and batches == [] and len(epochs) == 10
    assert epochs[0]["train_acc"] == pytest.approx(0.58) and epochs[0]["val_acc"] == pytest.approx(0.56)
    assert alarms(diagnose(keras)) == set()
