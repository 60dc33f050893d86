import time

import pytest
import torch

from cnntricks.preprocess.whiten import (
    Whitening, fit_patch_whitening, fit_whitening, whitened_patch_covariance)


def correlated_images(n, shape=(1, 8, 8), seed=0, spread=(0.0, -1.5)):
    """Gaussian noise mixed by a random orthogonal matrix with known variances, as (N, C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    dims = torch.Size(shape).numel()
    basis, _ = torch.linalg.qr(torch.randn(dims, dims, generator=g, dtype=torch.float64))
    scales = torch.logspace(*spread, dims, dtype=torch.float64)  # std devs, ratio ~30
    x = (torch.randn(n, dims, generator=g, dtype=torch.float64) * scales) @ basis.T + 0.5
    return x.reshape(n, *shape)


def covariance(x):
    x = x.reshape(len(x), -1).double()
    x = x - x.mean(0)
    return x.T @ x / len(x)


@pytest.mark.parametrize("method", ["pca", "zca"])
def test_whitened_training_data_has_identity_covariance(method):
    images = correlated_images(2000)
    whitening = fit_whitening(images, method, eps=1e-10)
    out = whitening(images)
    assert out.dtype == torch.float32
    assert out.shape == ((2000, 64) if method == "pca" else (2000, 1, 8, 8))
    assert (covariance(out) - torch.eye(64, dtype=torch.float64)).abs().max() < 0.05
    assert (covariance(images) - torch.eye(64, dtype=torch.float64)).abs().max() > 0.5  # was not


def test_uint8_images_are_whitened_in_unit_range():
    images = (correlated_images(2000) * 60 + 98).clamp(0, 255).to(torch.uint8)
    out = fit_whitening(images, "pca", eps=1e-10)(images)
    assert (covariance(out) - torch.eye(64, dtype=torch.float64)).abs().max() < 0.05
    assert fit_whitening(images).mean.mean() == pytest.approx(images.double().mean().item() / 255)


def test_zca_matrix_is_symmetric_and_pca_matrix_is_scaled_eigenvectors():
    images = correlated_images(500)
    zca = fit_whitening(images, "zca").matrix()
    assert torch.allclose(zca, zca.T, atol=1e-10)
    pca = fit_whitening(images, "pca")
    expected = pca.eigenvectors / torch.sqrt(pca.eigenvalues + 1e-5)
    assert torch.allclose(pca.matrix(), expected)


def test_reduction_keeps_k_columns_with_decreasing_variance_equal_to_eigenvalues():
    images = correlated_images(2000)
    whitening = fit_whitening(images)
    reduced = whitening.project(images, 10)
    assert reduced.shape == (2000, 10)
    variances = covariance(reduced).diagonal()
    assert torch.all(variances[1:] < variances[:-1])
    assert torch.allclose(variances, whitening.eigenvalues[:10], rtol=1e-4)
    assert fit_whitening(images, components=10)(images).shape == (2000, 10)


def test_reduce_with_all_components_reconstructs_and_fewer_lose_detail():
    images = correlated_images(300)
    whitening = fit_whitening(images)
    assert torch.allclose(whitening.reduce(images, 64), images.float(), atol=1e-5)
    errors = [(whitening.reduce(images, k) - images).square().mean().item() for k in (4, 16, 48)]
    assert errors[0] > errors[1] > errors[2] > 0
    eigen = whitening.eigenvectors_as_images(5)
    assert eigen.shape == (5, 1, 8, 8)
    assert torch.allclose(eigen.reshape(5, -1) @ eigen.reshape(5, -1).T, torch.eye(5), atol=1e-5)


def test_eps_damps_small_components_as_sqrt_s_over_s_plus_eps():
    images = correlated_images(2000)
    eps = fit_whitening(images).eigenvalues.median().item()
    whitening = fit_whitening(images, eps=eps)
    out_std = covariance(whitening(images)).diagonal().sqrt()
    s = whitening.eigenvalues
    assert torch.allclose(out_std, torch.sqrt(s / (s + eps)), rtol=1e-3)
    assert out_std[0] > 0.9 and out_std[-1] < 0.5  # big components kept, small ones damped


def test_statistics_come_only_from_the_images_given():
    train, other = correlated_images(2000, seed=0), correlated_images(2000, seed=1)
    whitening = fit_whitening(train, eps=1e-10)
    assert torch.allclose(whitening.mean, train.reshape(2000, -1).mean(0))
    assert (covariance(whitening(other)) - torch.eye(64, dtype=torch.float64)).abs().max() > 0.5


def test_round_trip_through_tensors():
    images = correlated_images(200)
    whitening = fit_whitening(images, "zca", components=20, eps=1e-3)
    tensors = whitening.to_tensors()
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    restored = Whitening.from_tensors(tensors)
    assert (restored.method, restored.components, restored.eps) == ("zca", 20, 1e-3)
    assert torch.equal(restored(images), whitening(images))
    assert Whitening.from_tensors(fit_whitening(images).to_tensors()).components is None


def test_dense_whitening_refuses_large_images_and_points_to_patch_whitening():
    with pytest.raises(ValueError, match="patch whitening") as error:
        fit_whitening(torch.zeros(2, 3, 224, 224, dtype=torch.uint8))
    assert "150528" in str(error.value) and "preprocess.whiten=patch" in str(error.value)
    with pytest.raises(ValueError, match="method"):
        fit_whitening(torch.zeros(2, 1, 4, 4), "pcaa")


def test_subset_fit_is_reproducible_from_the_generator():
    images = correlated_images(500)
    fit = lambda seed: fit_whitening(images, max_images=100,
                                     generator=torch.Generator().manual_seed(seed)).mean
    assert torch.equal(fit(1), fit(1)) and not torch.equal(fit(1), fit(2))


def correlated_field(n, size=16, seed=0):
    """Smooth (spatially correlated) single-channel images: noise blurred by a 5x5 box."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, size + 4, size + 4, generator=g)
    return torch.nn.functional.avg_pool2d(noise, 5, stride=1) + 0.5


def test_patch_whitening_conv_outputs_have_identity_covariance():
    images = correlated_field(1000)  # 1000 x 14 x 14 = 196,000 patches: all are used
    assert (covariance(images[:, :, :3, :3]) - torch.eye(9, dtype=torch.float64)).abs().max() > 0.01
    conv = fit_patch_whitening(images, patch_size=3, eps=1e-10)
    assert conv.weight.shape == (9, 1, 3, 3) and not conv.weight.requires_grad
    cov = whitened_patch_covariance(conv, images)
    assert (cov - torch.eye(9, dtype=torch.float64)).abs().max() < 0.05
    reduced = fit_patch_whitening(images, components=4, eps=1e-10)
    assert reduced.weight.shape == (4, 1, 3, 3)
    assert torch.allclose(reduced.weight, conv.weight[:4])


def test_patch_zca_keeps_image_shape_and_whitens_interior_pixels():
    images = torch.cat([correlated_field(500, seed=s) for s in (0, 1)], dim=1)  # 2 channels
    conv = fit_patch_whitening(images, eps=1e-10, method="zca")
    out = conv(images)
    assert out.shape == images.shape
    interior = out[:, :, 1:-1, 1:-1].transpose(0, 1).reshape(2, -1).double()
    cov = torch.cov(interior, correction=0)
    assert (cov - torch.eye(2, dtype=torch.float64)).abs().max() < 0.05


def test_patch_whitening_is_reproducible_from_the_generator():
    images = correlated_field(100)
    fit = lambda seed: fit_patch_whitening(images, max_patches=1000,
                                           generator=torch.Generator().manual_seed(seed)).weight
    assert torch.equal(fit(3), fit(3)) and not torch.equal(fit(3), fit(4))


def test_patch_whitening_handles_224x224x3_quickly():
    images = torch.randint(0, 256, (8, 3, 224, 224), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    conv = fit_patch_whitening(images, generator=torch.Generator().manual_seed(0))
    assert time.perf_counter() - start < 5
    assert conv.weight.shape == (27, 3, 3, 3)
    with torch.no_grad():
        out = conv(images[:4].float() / 255)
    assert out.shape == (4, 27, 222, 222) and torch.isfinite(out).all()
    cov = whitened_patch_covariance(conv, images[:4])  # a sample of 200k patches of 394k fitted
    assert (cov - torch.eye(27, dtype=torch.float64)).abs().max() < 0.05
