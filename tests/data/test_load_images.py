import numpy as np
import pytest
import torch
from data_helpers import save_image, save_truncated_jpeg

from cnntricks.data import DataError, load_images
from cnntricks.data.image_folder import load_image_folder


def test_files_of_any_mode_and_size_come_out_at_the_training_format(tmp_path):
    paths = [save_image(tmp_path / "a.png", size=(40, 20)), save_image(tmp_path / "b.bmp", mode="L", size=(9, 9)),
             save_image(tmp_path / "c.png", mode="RGBA"), str(save_image(tmp_path / "d.jpg", size=(300, 300)))]
    images = load_images(paths, channels=3, size=(12, 12))
    assert images.shape == (4, 3, 12, 12) and images.dtype == torch.uint8
    assert load_images(paths, channels=1, size=(28, 20)).shape == (4, 1, 28, 20)


def test_pixels_equal_what_the_image_folder_source_trained_on(tmp_path, data_config):
    root = tmp_path / "root"
    paths = [root / cls / name for cls in ("a", "b") for name in ("0.png", "1.png")]  # a test split takes one of each
    for path in paths:
        save_image(path, size=(30, 20))
    train, test = load_image_folder(data_config(root=str(root), image_size=10, test_fraction=0.5), 0)
    order = sorted(zip(torch.cat([train.labels, test.labels]).tolist(), torch.cat([train.images, test.images])),
                   key=lambda pair: pair[0])
    predicted = load_images(paths, 3, (10, 10))
    assert torch.equal(predicted, torch.stack([image for _, image in order]))


def test_every_bad_file_is_listed_with_its_reason(tmp_path):
    good = save_image(tmp_path / "good.png")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    broken = save_truncated_jpeg(tmp_path / "broken.jpg")
    with pytest.raises(DataError) as caught:
        load_images([good, tmp_path / "missing.png", text, broken, tmp_path], 3, (8, 8))
    message = str(caught.value)
    assert "could not read 4 of 5 image files" in message
    assert f"{tmp_path / 'missing.png'}: no such file" in message
    assert f"{text}: not an image Pillow can read" in message
    assert f"{broken}: not an image Pillow can read" in message and "truncated" in message
    assert f"{tmp_path}: is a folder" in message
    assert str(good) not in message


def test_no_paths_give_an_empty_batch_and_bad_channels_are_refused(tmp_path):
    assert load_images([], 1, (8, 8)).shape == (0, 1, 8, 8)
    with pytest.raises(DataError, match="channels must be 1 or 3"):
        load_images([save_image(tmp_path / "a.png")], 4, (8, 8))


def test_jpeg_draft_decoding_keeps_the_picture(tmp_path):
    big = save_image(tmp_path / "big.jpg", size=(400, 400), color=(10, 200, 30))
    image = load_images([big], 3, (16, 16))[0]
    assert np.abs(image.float().mean((1, 2)).numpy() - [10, 200, 30]).max() < 4
