"""`cnntricks predict RUN a.png b.jpg photos/ '*.jpg' [--top 3] [--json] [--csv FILE]` on a run trained on an
image folder."""
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


def test_predict_leaves_out_the_files_it_cannot_read_and_names_them(user, folder_run, tmp_path):
    picture("red", 104).save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = user.run("predict", folder_run, tmp_path / "good.png", tmp_path / "broken.jpg", "--json")
    assert result.code == 0, result  # one bad file does not cost the others their answer
    assert [a["image"] for a in json.loads(result.out)] == [str(tmp_path / "good.png")]
    assert "1 of 2 image files could not be read" in result.err and "broken.jpg" in result.err
    assert "Traceback" not in result.err

    none = user.run("predict", folder_run, tmp_path / "broken.jpg", tmp_path / "missing.png")
    assert none.code == 3, none
    assert "none of the 2 image files could be read" in none.err and "no such file" in none.err

    assert user.run("predict", tmp_path / "photos", tmp_path / "good.png").code == 4  # not a run


def test_predict_reads_folders_and_patterns_and_writes_a_csv(user, folder_run, tmp_path):
    import csv
    album = tmp_path / "album"
    (album / "deeper").mkdir(parents=True)
    (album / ".hidden").mkdir()
    picture("red", 110).save(album / "one.png")
    picture("green", 111).save(album / "deeper" / "two.jpg")
    picture("blue", 112).save(album / ".hidden" / "skip.png")
    (album / "notes.txt").write_text("not an image")
    result = user.run("predict", folder_run, album, "--csv", "out.csv", "--top", "1")
    assert result.code == 0, result
    with (user.cwd / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["image"] for row in rows] == [str(album / "deeper" / "two.jpg"), str(album / "one.png")]
    for row in rows:
        assert sum(float(row[c]) for c in CLASSES) == pytest.approx(1, abs=1e-4)
        assert row["label"] == max(CLASSES, key=lambda c: float(row[c]))
    pattern = user.run("predict", folder_run, str(album / "**" / "*.jpg"), "--json")
    assert [a["image"] for a in json.loads(pattern.out)] == [str(album / "deeper" / "two.jpg")]
    empty = user.run("predict", folder_run, str(album / "*.gif"))
    assert empty.code == 3 and "holds no image file" in empty.err


def test_predict_says_when_the_images_are_far_from_the_training_images(user, folder_run, tmp_path):
    picture("red", 120).resize((400, 400)).save(tmp_path / "huge.png")  # the run trained on 16x16 colour
    picture("red", 121).convert("L").save(tmp_path / "gray.png")
    result = user.run("predict", folder_run, tmp_path / "huge.png", tmp_path / "gray.png")
    assert result.code == 0, result
    assert "1 of 2 images are over 8x the size of the training images (16x16, colour): huge.png 400x400" in result.err
    assert "1 of 2 images are gray, unlike the training images" in result.err and "gray.png (L)" in result.err


def test_predict_needs_no_training_data(user, folder_run, tmp_path):
    """The run's data.json says classes and image size: the photos may be gone."""
    import shutil
    shutil.rmtree(tmp_path / "photos")
    picture("red", 104).save(tmp_path / "d.png")
    result = user.run("predict", folder_run, tmp_path / "d.png", "--json")
    assert result.code == 0, result
    assert json.loads(result.out)[0]["predictions"][0]["label"] in CLASSES
