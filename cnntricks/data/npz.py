"""Arrays in a NumPy .npz file: `x`, `y`, and optionally `x_test`, `y_test`, `classes`.

Images may be (N, H, W), (N, H, W, C) or (N, C, H, W) with C of 1, 3 or 4 (RGBA is composited
on white, like the image decoder does); uint8 as they are, or floats in [0, 1] (scaled by 255 and
rounded). Other integer types are accepted when their values fit 0..255. Labels are integers
0..K-1; `classes` (a string array) names them, and a label outside it is an error. Without
`classes` the classes are the label values that occur (in y and y_test together), named by
their values: 0..K-1 gives "0".."K-1"; other values ({0, 1, 2, 999}, or 1-based labels) are
renumbered 0..K-1 in order with a DataWarning naming the gaps, so a stray label never asks for
a 1000-class model (or, at 2**62, for more memory than exists). Without
`x_test` the test split is carved with data.test_fraction. The file is read with
allow_pickle=False: object arrays would run code from the file, so they are refused.
"""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from cnntricks.config import DataConfig
from cnntricks.data.convert import composite_on_white
from cnntricks.data.errors import DataError, DataWarning
from cnntricks.data.sources import SOURCES, carve_test
from cnntricks.data.store import Store

_CHANNELS = (1, 3, 4)


def _images(array: np.ndarray, name: str, path: Path) -> torch.Tensor:
    """uint8 (N, C, H, W) with C in {1, 3} from any accepted layout and type."""
    shape = array.shape
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        last, second = shape[3] in _CHANNELS, shape[1] in _CHANNELS
        if last and not second:
            array = array.transpose(0, 3, 1, 2)
        elif last and second:
            raise DataError(f"{path}: {name} has shape {shape}; both axis 1 and axis 3 could be channels. "
                            f"Save it as (N, H, W, C) or (N, C, H, W) with H and W above 4")
        elif not second:
            raise DataError(f"{path}: {name} has shape {shape}; a channel axis of 1, 3 or 4 is needed, "
                            f"as (N, H, W, C) or (N, C, H, W)")
    else:
        raise DataError(f"{path}: {name} has shape {shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if len(array) == 0:
        raise DataError(f"{path}: {name} holds no images (shape {shape})")
    if array.dtype == np.uint8:
        pass
    elif np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if not (0.0 <= low and high <= 1.0):  # also false for NaN
            raise DataError(f"{path}: {name} is {array.dtype} with values in [{low}, {high}]; float images must "
                            f"lie in [0, 1] (divide by 255, or save them as uint8)")
        array = np.rint(array.astype(np.float32) * 255)
    elif np.issubdtype(array.dtype, np.integer):
        low, high = int(np.min(array)), int(np.max(array))
        if low < 0 or high > 255:
            raise DataError(f"{path}: {name} is {array.dtype} with values in [{low}, {high}]; expected 0..255 "
                            f"(save the images as uint8)")
    else:
        raise DataError(f"{path}: {name} has dtype {array.dtype}; expected uint8, or floats in [0, 1]")
    images = torch.from_numpy(np.ascontiguousarray(array, dtype=np.uint8))
    return composite_on_white(images) if images.shape[1] == 4 else images


def _labels(array: np.ndarray, name: str, count: int, images_name: str, path: Path) -> torch.Tensor:
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{path}: {name} has shape {array.shape} and dtype {array.dtype}; expected "
                        f"integer class indices (N,)")
    if len(array) != count:
        raise DataError(f"{path}: {name} has {len(array)} labels but {images_name} has {count} images; "
                        f"they must match one to one")
    if len(array) and array.min() < 0:
        raise DataError(f"{path}: {name} has negative labels (min {array.min()}); labels are class indices 0..K-1")
    if len(array) and int(array.max()) > np.iinfo(np.int64).max:
        raise DataError(f"{path}: {name} has a label of {array.max()}, beyond 64-bit integers; labels are class "
                        f"indices 0..K-1")
    return torch.from_numpy(array.astype(np.int64))


def _gaps(values: list[int], limit: int = 5) -> str:
    """'3..998, 1000' for the sorted, distinct `values`: the integers from 0 up that are missing."""
    gaps = [(low + 1, high - 1) for low, high in zip([-1, *values], values) if high > low + 1]
    text = ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in gaps[:limit])
    return text + (f" and {len(gaps) - limit} more" if len(gaps) > limit else "")


def _number_classes(labels: list[torch.Tensor], path: Path) -> tuple[list[str], list[torch.Tensor]]:
    """(class names, labels renumbered 0..K-1) when the file has no classes array."""
    values = torch.unique(torch.cat(labels))  # sorted, non-negative (checked in _labels)
    names = [str(value) for value in values.tolist()]
    if int(values[-1]) == len(values) - 1:  # already 0..K-1
        return names, labels
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    warnings.warn(DataWarning(
        f"{path}: labels are not 0..K-1 but {len(values)} values from {names[0]} to {names[-1]} (missing "
        f"{_gaps(values.tolist())}); using {len(values)} classes named by their label values ({shown}); "
        f"save a classes array to name them, or number the labels 0..{len(values) - 1}"), stacklevel=4)
    return names, [torch.searchsorted(values, part) for part in labels]


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot read it as .npz ({err}); save the arrays with numpy.savez") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds one array, not named arrays; save them with numpy.savez(path, x=..., y=...)")
    with archive:
        arrays = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError:  # an object array: loading it would unpickle
                raise DataError(f"{path}: array '{name}' holds Python objects, which are never unpickled; save it "
                                f"as numbers (classes as a string array: np.array([...], dtype=str))") from None
            except (OSError, EOFError, zipfile.BadZipFile) as err:
                raise DataError(f"{path}: array '{name}' is damaged ({err}); save the file again") from None
    return arrays


@SOURCES.register("npz")
def load_npz(cfg: DataConfig, seed: int) -> tuple[Store, Store]:
    """(train, test) from the .npz at data.root; `seed` is unused (a carved test uses TEST_SPLIT_SEED)."""
    if cfg.root is None:
        raise DataError("data.root: the npz source needs a file; set data.root=path/to/data.npz "
                        "(arrays x, y, optionally x_test, y_test, classes)")
    path = Path(cfg.root).expanduser()
    if not path.is_file():
        raise DataError(f"data.root: '{path}' is not a file; the npz source reads a .npz with arrays x and y")
    arrays = _read(path)
    missing = [name for name in ("x", "y") if name not in arrays]
    if ("x_test" in arrays) != ("y_test" in arrays):
        missing.append("y_test" if "x_test" in arrays else "x_test")
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}; found {', '.join(sorted(arrays)) or 'none'} "
                        f"(x and y are required, x_test and y_test come together)")
    images = _images(arrays["x"], "x", path)
    labels = _labels(arrays["y"], "y", len(images), "x", path)
    test = None
    if "x_test" in arrays:
        test_images = _images(arrays["x_test"], "x_test", path)
        if test_images.shape[1:] != images.shape[1:]:
            raise DataError(f"{path}: x_test images are {tuple(test_images.shape[1:])} (C, H, W) but x images are "
                            f"{tuple(images.shape[1:])}; both splits need one format")
        test = (test_images, _labels(arrays["y_test"], "y_test", len(test_images), "x_test", path))

    top = int(max(labels.max(), test[1].max() if test else 0))
    if "classes" in arrays:
        names = arrays["classes"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"{path}: classes has shape {names.shape} and dtype {names.dtype}; expected a 1-D "
                            f"string array")
        classes = [str(name.decode() if isinstance(name, bytes) else name) for name in names.tolist()]
        if top >= len(classes):
            raise DataError(f"{path}: labels go up to {top} but classes names only {len(classes)}; "
                            f"labels must be 0..{len(classes) - 1}")
    elif test is None:
        classes, (labels,) = _number_classes([labels], path)
    else:
        classes, (labels, test_labels) = _number_classes([labels, test[1]], path)
        test = (test[0], test_labels)
    train = Store(images, labels, classes)
    if test is None:
        return carve_test(train, cfg.test_fraction, where=f"data.root: '{path}'")
    return train, Store(*test, classes)
