import time

import torch
from torch import nn

from cnntricks.data import batch_indices, load_splits
from cnntricks.data.synthetic import load_synthetic


def test_default_sizes_and_balanced_classes(data_config):
    train, test = load_synthetic(data_config(), 0)
    assert train.images.shape == (512, 3, 16, 16) and test.images.shape == (128, 3, 16, 16)
    assert train.class_counts().tolist() == [128] * 4 and test.class_counts().tolist() == [32] * 4


def test_deterministic_for_a_seed(data_config):
    a, b, c = load_synthetic(data_config(), 3), load_synthetic(data_config(), 3), load_synthetic(data_config(), 4)
    assert torch.equal(a[0].images, b[0].images) and torch.equal(a[1].labels, b[1].labels)
    assert not torch.equal(a[0].images, c[0].images)


def test_image_size_and_channels_are_honoured(data_config):
    train, _ = load_synthetic(data_config(image_size=24, channels=1), 0)
    assert train.images.shape == (512, 1, 24, 24)


def test_fast(data_config):
    load_synthetic(data_config(), 0)
    start = time.perf_counter()
    load_synthetic(data_config(), 1)
    # 5 ms on an idle machine; the bound leaves room for a busy CI runner.
    assert time.perf_counter() - start < 0.5


def test_a_tiny_cnn_learns_it_to_over_90_percent(data_config):
    torch.manual_seed(0)
    splits = load_splits(data_config(source="synthetic", val_fraction=0), 0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    scale = lambda images: images.float() / 255 - 0.5  # noqa: E731
    for _ in range(8):
        for idx in batch_indices(len(splits.train), 32, generator):
            loss = nn.functional.cross_entropy(model(scale(splits.train.images[idx])), splits.train.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = (model(scale(splits.test.images)).argmax(1) == splits.test.labels).float().mean().item()
    assert accuracy > 0.9
