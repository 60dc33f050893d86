"""`cnntricks config [SECTION] [--yaml]`: every key, its default and its meaning."""
from __future__ import annotations

import yaml

from cnntricks import config


def entries(out: str) -> dict[str, list[str]]:
    """Each key's cells (key, default, values, meaning), wrapped continuation lines joined by spaces;
    the columns are where the dashes under the header are."""
    import re
    lines = out.splitlines()
    assert lines[0].split() == ["key", "default", "values", "meaning"]
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    spans[-1] = (spans[-1][0], None)
    rows: dict[str, list[str]] = {}
    for line in lines[2:]:
        cells = [line[a:b].strip() for a, b in spans]
        if cells[0]:
            rows[cells[0]] = cells
        else:
            last = rows[list(rows)[-1]]
            for i, cell in enumerate(cells):
                last[i] = f"{last[i]} {cell}".strip() if cell else last[i]
    return rows


def keys_listed(out: str) -> list[str]:
    return list(entries(out))


def words(text: str) -> list[str]:
    return text.split()


def test_config_lists_every_key_with_its_default_and_meaning(user):
    result = user.run("config")
    assert result.code == 0, result
    rows = config.describe()
    assert keys_listed(result.out) == [key for key, *_ in rows]
    assert len(rows) == sum(len(config._section_fields(s)) for s in config.SECTIONS)
    lines = entries(result.out)
    for key, default, values, meaning in rows:
        assert meaning, f"{key} has no meaning (a trailing comment in config.py)"
        cells = lines[key]
        assert cells[1] == default and words(cells[3]) == words(meaning)
        assert cells[2].replace(" ", "") == values.replace(" ", "")
    assert "seed §4" in lines["optim.lr"][3]


def test_config_fits_the_terminal_and_a_closed_pipe_is_no_error(user, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    result = user.run("config", "optim")
    assert result.code == 0 and max(len(line) for line in result.out.splitlines()) <= 100, result.out
    import subprocess
    import sys
    piped = subprocess.run(f"{sys.executable} -m cnntricks.cli config | head -1; echo \"${{PIPESTATUS[0]}}\"",
                           shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert piped.stdout.startswith("key") and piped.stderr == "", piped.stderr
    # 141 (as a program killed by SIGPIPE) when head left before the table was written, 0 when the whole table
    # fit in the pipe's buffer first: a race; never a traceback or a message either way
    assert piped.stdout.splitlines()[-1] in ("0", "141")
    closed = ("import os, sys\nread, write = os.pipe()\nos.close(read)\nos.dup2(write, 1)\n"  # the reader gone first
              "from cnntricks.cli import main\nsys.exit(main(['config']))")
    gone = subprocess.run([sys.executable, "-c", closed], capture_output=True, text=True, timeout=60)
    assert gone.returncode == 141 and gone.stderr == "", gone.stderr


def test_config_section_lists_only_that_section(user):
    result = user.run("config", "optim")
    assert result.code == 0, result
    assert keys_listed(result.out) == [key for key, *_ in config.describe() if key.startswith("optim.")]

    section = yaml.safe_load(user.run("config", "optim", "--yaml").out)
    assert list(section) == ["optim"] and section["optim"] == config.Config().to_dict()["optim"]

    typo = user.run("config", "optimm")
    assert typo.code == 2, typo
    assert "did you mean 'optim'" in typo.err


def test_config_yaml_is_a_complete_file_config_accepts(user, tmp_path):
    result = user.run("config", "--yaml")
    assert result.code == 0, result
    values = yaml.safe_load(result.out)
    assert isinstance(values, dict) and set(values) == set(config.SECTIONS)
    assert config.from_dict(values) == config.Config()
    assert sum(len(section) for section in values.values()) == len(config.describe())

    # ... and a file to start from: edited and given to train, it is the run's config.
    (tmp_path / "mine.yaml").write_text(result.out.replace("source: fashion-mnist", "source: synthetic"))
    run = user.run("train", tmp_path / "mine.yaml", "model.width=4", "model.depth=1", "train.epochs=1",
                   "train.threads=1", "--run-dir", "run", "--quiet")
    assert run.code == 0, run
    assert config.load(user.cwd / "run" / "config.yaml").data.source == "synthetic"
