import pytest
import torch

from cnntricks.config import PreprocessConfig
from cnntricks.preprocess.pipeline import FIT_IMAGES, fit_preprocess, load_preprocess


def correlated_images(n=3000, size=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(size * size, size * size, generator=g) / size
    x = torch.randn(n, size * size, generator=g) @ mixing
    x = (x - x.min()) / (x.max() - x.min()) * 255
    return x.round().to(torch.uint8).reshape(n, 1, size, size)


@pytest.mark.parametrize("whiten", ["none", "zca", "patch"])
def test_saved_pipeline_transforms_exactly_as_the_fitted_one(tmp_path, whiten):
    images = correlated_images()
    fitted = fit_preprocess(PreprocessConfig(whiten=whiten), images, torch.Generator().manual_seed(0))
    fitted.save(tmp_path)
    loaded = load_preprocess(tmp_path)
    out = fitted(images[:50])
    assert out.shape == images[:50].shape and out.dtype == torch.float32
    assert torch.allclose(loaded(images[:50]), out, atol=1e-6)


def test_zca_pipeline_whitens_the_training_data():
    images = correlated_images()
    x = fit_preprocess(PreprocessConfig(whiten="zca", eps=1e-6), images, torch.Generator())(images)
    flat = x.reshape(len(x), -1).double()
    covariance = flat.T @ flat / len(flat)
    assert (covariance - torch.eye(flat.shape[1], dtype=torch.float64)).abs().max() < 0.05


def test_dense_zca_of_large_images_points_to_patch_whitening():
    images = torch.zeros(4, 3, 64, 64, dtype=torch.uint8)  # D = 12288 > 8192
    with pytest.raises(ValueError, match="patch"):
        fit_preprocess(PreprocessConfig(whiten="zca"), images, torch.Generator())


def test_training_fits_statistics_on_the_training_split_only(tmp_path):
    import json

    from cnntricks import config
    from cnntricks.data import load_splits
    from cnntricks.preprocess import fit_normalization
    from cnntricks.session import train
    cfg = config.load(None, ["data.source=synthetic", "data.val_fraction=0.3", "train.epochs=1",
                             "model.width=4", "train.threads=1"])
    train(cfg, tmp_path / "run", progress=False, report=False)
    saved = json.loads((tmp_path / "run" / "preprocess.json").read_text())
    splits = load_splits(cfg.data, cfg.train.seed)
    assert saved["mean"] == fit_normalization(splits.train.images, "standardize").mean
    everything = torch.cat([splits.train.images, splits.val.images, splits.test.images])
    assert saved["mean"] != fit_normalization(everything, "standardize").mean


def test_pca_pipeline_gives_k_whitened_components_and_saves(tmp_path):
    images = correlated_images()
    fitted = fit_preprocess(PreprocessConfig(whiten="pca", components=10, eps=1e-6), images, torch.Generator())
    out = fitted(images)
    assert out.shape == (len(images), 10, 1, 1)
    flat = out.flatten(1).double()
    assert (flat.T @ flat / len(flat) - torch.eye(10, dtype=torch.float64)).abs().max() < 0.05
    fitted.save(tmp_path)
    assert torch.allclose(load_preprocess(tmp_path)(images[:20]), out[:20], atol=1e-6)


def test_pca_whitening_trains_the_mlp_and_is_refused_for_conv_nets(tmp_path):
    from cnntricks import config
    from cnntricks.config import ConfigError
    from cnntricks.session import train
    keys = ["data.source=digits", "preprocess.whiten=pca", "preprocess.components=24", "train.epochs=3",
            "train.threads=1"]
    summary = train(config.load(None, keys + ["model.name=mlp"]), tmp_path / "mlp", progress=False, report=False)
    assert summary["test_acc"] > 0.8  # 10 classes: chance is 0.1
    with pytest.raises(ConfigError, match="model.name=mlp"):
        train(config.load(None, keys), tmp_path / "conv", progress=False, report=False)
    assert not (tmp_path / "conv").exists()


def test_an_unknown_whitening_is_the_registrys_error_with_the_closest_name():
    with pytest.raises(ValueError, match="unknown whitening 'zac' \\(did you mean 'zca'\\?\\)"):
        fit_preprocess(PreprocessConfig(whiten="zac"), correlated_images(10), torch.Generator())


def test_no_whitening_draws_nothing_and_dense_whitening_draws_only_its_sample():
    small, large = correlated_images(50, size=3), correlated_images(FIT_IMAGES + 1, size=3)
    for whiten, images, draws in (("none", large, False), ("zca", small, False), ("zca", large, True)):
        generator = torch.Generator().manual_seed(0)
        fit_preprocess(PreprocessConfig(whiten=whiten), images, generator)
        assert (not torch.equal(generator.get_state(), torch.Generator().manual_seed(0).get_state())) == draws
