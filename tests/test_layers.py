"""The package's layers, written down once: an import may only go down (to an earlier tier), never
up and never sideways between two packages of one tier. Lazy imports inside functions count too:
a cycle hidden in a function is still a cycle (docs/architecture.md draws the map)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnntricks"

# Bottom first. The run-directory format and the config sit at the bottom; the CLI on top.
LAYERS = (
    ("registry", "text"),
    ("config", "rundir"),
    ("data",),
    ("augment", "preprocess"),
    ("nn",),
    ("transfer",),
    ("train",),
    ("monitor", "doctor"),
    ("report",),
    ("session",),
    ("ensemble",),
    ("tune",),
    ("export",),
    ("experiments",),
    ("cli_parser",),
    ("cli",),
    ("__main__",),  # python -m cnntricks (torchrun -m cnntricks): the command line
)
TIER = {unit: tier for tier, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """'cnntricks.train.loop' -> 'train'; 'cnntricks.rundir' -> 'rundir'."""
    return module.split(".")[1]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported cnntricks module) for every import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("cnntricks.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cnntricks":  # from cnntricks import config, ...
                found += [(node.lineno, f"cnntricks.{alias.name}") for alias in node.names]
            elif node.module.startswith("cnntricks."):
                found.append((node.lineno, node.module))
    return found


def violations() -> list[str]:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        here = parts[1]
        if here == "__init__":  # cnntricks/__init__.py: imports nothing
            continue
        assert here in TIER, f"{path}: '{here}' is in no layer of LAYERS; add it where it belongs"
        for line, module in imports_of(path):
            there = unit_of(module)
            if there == here:
                continue
            if TIER[there] > TIER[here]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports {module} (a higher layer)")
            elif TIER[there] == TIER[here]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports {module} (same layer)")
    return wrong


def test_imports_only_go_down_the_layers():
    assert violations() == []


def test_the_run_directory_layer_imports_nothing_else_of_cnntricks():
    assert imports_of(PACKAGE / "rundir.py") == []


def test_train_imports_neither_the_doctor_nor_the_monitor():
    for path in (PACKAGE / "train").rglob("*.py"):
        assert not [m for _, m in imports_of(path) if unit_of(m) in ("doctor", "monitor")], path


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "cnntricks"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "bad.py").write_text("def f():\n    from cnntricks.train.loop import fit\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert violations() == ["cnntricks/data/bad.py:2: data imports cnntricks.train.loop (a higher layer)"]
