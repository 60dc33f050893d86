"""`cnntricks predict RUN a.png b.jpg [--top 3] [--json]` on a run trained on an image folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

CLASSES = ["blue", "green", "red"]  # sorted folder names are the class names
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def picture(colour: str, seed: int) -> Image.Image:
    """A 16x16 image of one colour with noise, so no two files are the same."""
    noise = np.random.default_rng(seed).integers(-25, 26, (16, 16, 3))
    return Image.fromarray(np.clip(np.array(COLOURS[colour]) + noise, 0, 255).astype(np.uint8))


@pytest.fixture
def folder_run(user, tmp_path):
    for colour in CLASSES:
        (tmp_path / "photos" / colour).mkdir(parents=True)
        for n in range(10):  # PNG and JPEG
            picture(colour, n).save(tmp_path / "photos" / colour / f"{n}.{'png' if n % 2 else 'jpg'}")
    result = user.run("train", "data.source=image-folder", f"data.root={tmp_path / 'photos'}", "model.width=8",
                      "model.depth=2", "optim.batch_size=8", "train.epochs=3", "train.threads=1",
                      "--run-dir", "run", "--quiet")
    assert result.code == 0, result
    return user.cwd / "run"


def test_predict_prints_a_label_and_probability_per_image(user, folder_run, tmp_path):
    picture("red", 100).save(tmp_path / "a.png")
    picture("blue", 101).save(tmp_path / "b.jpg")
    result = user.run("predict", folder_run, tmp_path / "a.png", tmp_path / "b.jpg")
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0].split()[:3] == ["image", "label", "probability"]
    for line, name in zip(lines[2:], ("a.png", "b.jpg")):
        image, label, probability = line.split()[:3]
        assert image.endswith(name) and label in CLASSES and 0 < float(probability) <= 1


def test_predict_json_lists_class_names_with_probabilities(user, folder_run, tmp_path):
    picture("green", 102).save(tmp_path / "c.png")
    picture("red", 103).convert("L").save(tmp_path / "gray.png")  # another mode: converted as in training
    result = user.run("predict", folder_run, tmp_path / "c.png", tmp_path / "gray.png", "--json", "--top", "2")
    assert result.code == 0, result
    answers = json.loads(result.out)
    assert [a["image"] for a in answers] == [str(tmp_path / "c.png"), str(tmp_path / "gray.png")]
    for answer in answers:
        labels = [p["label"] for p in answer["predictions"]]
        probabilities = [p["probability"] for p in answer["predictions"]]
        assert len(labels) == 2 and len(set(labels)) == 2 and set(labels) <= set(CLASSES)
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(0 <= p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-6

    everything = json.loads(user.run("predict", folder_run, tmp_path / "c.png", "--json").out)[0]["predictions"]
    assert sorted(p["label"] for p in everything) == CLASSES  # --top 3 of 3 classes: all of them
    assert sum(p["probability"] for p in everything) == pytest.approx(1, abs=1e-5)


def test_predict_names_the_file_it_cannot_read(user, folder_run, tmp_path):
    picture("red", 104).save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = user.run("predict", folder_run, tmp_path / "good.png", tmp_path / "broken.jpg")
    assert result.code == 3, result
    assert "broken.jpg" in result.err and "good.png" not in result.err and "Traceback" not in result.err

    missing = user.run("predict", folder_run, tmp_path / "good.png", tmp_path / "missing.png")
    assert missing.code == 3, missing
    assert "missing.png" in missing.err and "no such file" in missing.err

    assert user.run("predict", tmp_path / "photos", tmp_path / "good.png").code == 4  # not a run


def test_predict_needs_no_training_data(user, folder_run, tmp_path):
    """The run's data.json says classes and image size: the photos may be gone."""
    import shutil
    shutil.rmtree(tmp_path / "photos")
    picture("red", 104).save(tmp_path / "d.png")
    result = user.run("predict", folder_run, tmp_path / "d.png", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)[0]["predictions"][0]["label"] in CLASSES
