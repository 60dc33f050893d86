"""One source run for the fine-tuning tests, trained once per session and copied into each test's folder."""
import shutil
import warnings

import pytest

SOURCE = ["data.source=synthetic", "model.width=8", "model.depth=3", "train.epochs=1", "optim.batch_size=32",
          "train.threads=1", "--quiet"]


@pytest.fixture(scope="session")
def trained_source(tmp_path_factory):
    from cnntricks import config
    from cnntricks.session import train
    folder = tmp_path_factory.mktemp("transfer-source") / "source"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(config.load(None, [o for o in SOURCE if "=" in o]), folder, progress=False, report=False)
    return folder


@pytest.fixture
def source(user, trained_source):
    """The source run as `source/` in the user's working folder (model.pretrained=source)."""
    shutil.copytree(trained_source, user.cwd / "source")
    return user.cwd / "source"
