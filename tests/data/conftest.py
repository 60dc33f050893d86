"""Fixtures of the data tests: an isolated cache and a DataConfig factory."""
from __future__ import annotations

import pytest

from cnntricks.config import DataConfig


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Nothing a test loads may touch the real ~/.cache: the default cache lives in tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "cnntricks"


@pytest.fixture
def data_config(tmp_path):
    """DataConfig factory with the cache in tmp_path."""
    def make(**values) -> DataConfig:
        values.setdefault("cache_dir", str(tmp_path / "cache"))
        return DataConfig(**values)
    return make
