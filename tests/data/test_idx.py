import gzip

import numpy as np
import pytest
from data_helpers import idx_bytes

from cnntricks.data import DataError
from cnntricks.data.idx import parse_idx, read_idx


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_plain_and_gzip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    data = idx_bytes(images)
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    result = read_idx(path)
    assert result.dtype == np.uint8 and np.array_equal(result, images)
    assert result.flags.writeable


def test_big_endian_int32():
    values = np.array([1, -2, 70000], dtype=">i4")
    data = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + values.tobytes()
    assert parse_idx(data).tolist() == [1, -2, 70000]


@pytest.mark.parametrize("data, message", [
    (idx_bytes(np.zeros((4, 2), np.uint8))[:-3], "truncated"),
    (idx_bytes(np.zeros((4, 2), np.uint8)) + b"\0", "longer than its header"),
    (b"\x01\x02\x08\x01", "not an IDX file"),
    (b"", "not an IDX file"),
    (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]), "unknown IDX type byte 0x07"),
    (bytes([0, 0, 0x08, 3, 0, 0]), "truncated IDX header"),
])
def test_damaged_files_name_the_file(tmp_path, data, message):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    compressed = gzip.compress(idx_bytes(np.zeros((100, 28, 28), np.uint8)))
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)
