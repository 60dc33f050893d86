"""data.storage=disk (data/mapped.py): the decoded store as a file read by index batch, its resumable build,
and training from it equal to training from memory."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from data_helpers import save_image, save_truncated_jpeg
from safetensors.torch import load_file

from cnntricks import config
from cnntricks.data import DataError, DataWarning, load_splits
from cnntricks.data import image_folder, mapped
from cnntricks.data.mapped import MappedImages
from cnntricks.rundir import latest_checkpoint
from cnntricks.train.loop import fit


def image_folder_at(root, per_class=12, classes=3):
    rng = np.random.default_rng(0)
    for c in range(classes):
        for i in range(per_class):
            color = tuple(int(v) for v in rng.integers(0, 256, 3))
            save_image(root / f"class{c}" / f"{i:03d}.png", size=(10 + i % 3, 9), color=color)
    return root


def test_mapped_rows_read_by_index_slice_and_mask_equal_the_array(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (20, 3, 4, 5), dtype=np.uint8)
    array.tofile(tmp_path / "images.u8")
    images = MappedImages(tmp_path / "images.u8", array.shape)
    expected = torch.from_numpy(array)
    assert images.shape == (20, 3, 4, 5) and len(images) == 20
    assert torch.equal(images[torch.tensor([7, 2, 2, 19])], expected[[7, 2, 2, 19]])  # any order, repeats
    assert torch.equal(images[3:9], expected[3:9]) and torch.equal(images[:], expected)
    mask = torch.arange(20) % 3 == 0
    assert torch.equal(images[mask], expected[mask])
    view = images.take(torch.tensor([5, 6, 7, 8])).take(torch.tensor([3, 0]))  # views compose, nothing read
    assert len(view) == 2 and torch.equal(view[torch.tensor([0, 1])], expected[[8, 5]])
    with pytest.raises(TypeError, match="read a batch at a time"):
        images.to("cpu")
    (tmp_path / "short.u8").write_bytes(array.tobytes()[:-7])
    with pytest.raises(DataError, match="row 19 is cut short .*delete .* and build it again"):
        MappedImages(tmp_path / "short.u8", array.shape)[torch.tensor([19])]


def test_the_disk_store_holds_what_the_memory_store_holds_and_skips_what_it_skips(tmp_path, data_config):
    root = image_folder_at(tmp_path / "photos")
    save_truncated_jpeg(root / "class1" / "broken.jpg")
    common = dict(source="image-folder", root=str(root), image_size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        memory = load_splits(data_config(storage="memory", **common), 0)
        disk = load_splits(data_config(storage="disk", **common), 0)
    assert sum("broken.jpg" in str(w.message) for w in caught) == 2  # both say which file they skipped
    for name in ("train", "val", "test"):
        a, b = getattr(memory, name), getattr(disk, name)
        assert b.on_disk and not a.on_disk
        assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images[:])


def test_a_killed_build_goes_on_where_it_stood_and_a_changed_folder_is_built_anew(tmp_path, data_config, monkeypatch):
    root = image_folder_at(tmp_path / "photos", per_class=30)
    cfg = data_config(source="image-folder", root=str(root), image_size=8)
    monkeypatch.setattr(mapped, "CHUNK", 10)
    monkeypatch.setattr(mapped, "SAVE_EVERY", 10)
    decode, calls = mapped._decode_rows, []

    def dies_at_the_fourth_task(task):
        calls.append(len(task[-1]))
        if len(calls) == 4:
            raise KeyboardInterrupt  # a kill: what was saved before it stays
        return decode(task)

    monkeypatch.setattr(mapped, "_decode_rows", dies_at_the_fourth_task)
    with pytest.raises(KeyboardInterrupt):
        image_folder.build_disk_store(cfg, workers=1, progress=False)
    folder = image_folder.disk_folder(cfg, root.resolve(), 3, (8, 8))
    assert int(np.load(folder / mapped.DONE).sum()) == 30 and not mapped.read_state(folder)["complete"]
    monkeypatch.setattr(mapped, "_decode_rows", decode)
    decoded = []
    monkeypatch.setattr(mapped, "_decode_rows", lambda task: decoded.append(len(task[-1])) or decode(task))
    _, state = image_folder.build_disk_store(cfg, workers=1, progress=False)
    assert state["complete"] and sum(decoded) == 60  # only the 60 rows not yet written
    resumed = (folder / mapped.IMAGES).read_bytes()
    fresh_cfg = data_config(source="image-folder", root=str(root), image_size=8, cache_dir=str(tmp_path / "fresh"))
    fresh_folder, _ = image_folder.build_disk_store(fresh_cfg, workers=1, progress=False)
    assert (fresh_folder / mapped.IMAGES).read_bytes() == resumed  # the same bytes as a build never killed

    save_image(root / "class0" / "new.png", size=(9, 9), color=(1, 2, 3))
    decoded.clear()
    again, state = image_folder.build_disk_store(cfg, workers=1, progress=False)
    assert again == folder and state["shape"][0] == 91 and sum(decoded) == 91  # built anew, in its place


def test_storage_auto_picks_disk_when_the_images_would_not_fit_and_says_so(tmp_path, data_config, monkeypatch):
    root = image_folder_at(tmp_path / "photos")
    monkeypatch.setattr(image_folder, "available_memory", lambda: 3 * 36 * 8 * 8)  # 12x12: over twice that; 4x4: a quarter
    with pytest.warns(DataWarning, match=r"data.storage=auto: the 36 images .* at 3x12x12 take .* read from disk"):
        splits = load_splits(data_config(source="image-folder", root=str(root), image_size=12), 0)
    assert splits.train.on_disk
    assert not load_splits(data_config(source="image-folder", root=str(root), image_size=4), 0).train.on_disk
    with pytest.raises(DataError, match="data.storage=disk: .* set data.image_size=N"):
        load_splits(data_config(source="image-folder", root=str(root), storage="disk"), 0)


def test_training_from_disk_equals_training_from_memory_bit_for_bit(tmp_path):
    root = image_folder_at(tmp_path / "photos", per_class=20)
    common = [f"data.root={root}", "data.source=image-folder", "data.image_size=8", f"data.cache_dir={tmp_path}/c",
              "model.width=4", "model.depth=2", "train.epochs=2", "optim.batch_size=8", "train.threads=1",
              "train.monitor=off", "doctor.mode=off", "augment.policy=standard"]
    memory = fit(config.load(None, [*common, "data.storage=memory"]), tmp_path / "memory", progress=False)
    disk = fit(config.load(None, [*common, "data.storage=disk"]), tmp_path / "disk", progress=False)
    a, b = (load_file(latest_checkpoint(tmp_path / run) / "model.safetensors") for run in ("memory", "disk"))
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert disk["test_acc"] == memory["test_acc"] and memory["data_wait_seconds"] is None
    assert disk["data_wait_seconds"] >= 0


def test_the_cache_command_builds_the_store_and_refuses_other_sources(user, tmp_path):
    root = image_folder_at(tmp_path / "photos")
    done = user.run("cache", "data.source=image-folder", f"data.root={root}", "data.image_size=8", "--workers", "1")
    assert done.code == 0, done.err
    assert "36 images at 3x8x8 in " in done.out and "train from it with data.storage=disk" in done.out
    refused = user.run("cache", "data.source=digits")
    assert refused.code == 2 and "builds an image folder's disk store; data.source is digits" in refused.err
