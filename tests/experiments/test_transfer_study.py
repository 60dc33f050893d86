"""`cnntricks experiment transfer --budget smoke`: every strategy in the four cells, the seed's and the
advisor's picks, the probes per stage, through the real command line."""
import importlib.util
import json
from pathlib import Path

from cnntricks.cli import main
from cnntricks.experiments import transfer


def test_the_transfer_study_runs_every_strategy_in_every_cell(tmp_path, capsys):
    out = tmp_path / "transfer"
    assert main(["experiment", "transfer", "--budget", "smoke", "--out", str(out)]) == 0
    numbers = json.loads((out / "results.json").read_text())
    labels = [label for label, _ in transfer.STRATEGIES]
    assert [row[0] for row in numbers["rows"]] == labels + ["the seed's choice", "advisor's pick (transfer.strategy=auto)",
                                                           "best fine-tuning − scratch (points)"]
    assert len(numbers["header"]) == 1 + len(transfer.CELLS)
    for cell in transfer.CELLS:
        name = "-".join(cell)
        assert len(list((out / name / "runs").iterdir())) == len(labels)
        check = numbers["checks"][", ".join(cell)]
        assert check["best"] in labels and isinstance(check["advisor_within_1pt"], bool)
        assert len(check["probe_acc"][0]) == 3  # the advisor's probe per stage of the depth-3 source
    linear = json.loads((out / "similar-small" / "runs" / "linear-seed0" / "summary.json").read_text())
    assert linear["steps"] == 0 and linear["transfer"]["strategy"] == "linear"
    scratch = (out / "similar-small" / "runs" / "scratch-seed0" / "history.jsonl").read_text()
    assert "weights not loaded" in scratch
    assert [row["stage"] for row in numbers["probes"]["similar"]] == [0, 1, 2]
    table = (out / "results.md").read_text()
    assert "cnntricks experiment transfer --budget smoke --seeds 1" in table and "**" in table
    assert (out / "transfer.png").stat().st_size > 0 and (out / "transfer_probes.png").stat().st_size > 0
    assert "results.md" in capsys.readouterr().out
    similarity = load_benchmark("transfer_similarity")  # the three similarity measures, on this study
    assert similarity.main([str(out), "--per-class", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["source classes", "similar", "different (letters)", "digits"]
    assert all("probes [" in line and "random network [" in line and "bn shift" in line for line in lines)
    race = load_benchmark("transfer_race")  # top against scratch on a held-out third, per cell
    assert race.main([str(out), "--budget", "smoke", "--seeds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(transfer.CELLS) + 1 and all("the study's winner: " in line for line in lines[:-1])
    assert lines[-1].startswith("the race picks the study's winner in ") and lines[-1].endswith(" of 4 (cell, seed) pairs")


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_transfer_study_refuses_data_it_does_not_use(tmp_path, capsys):
    assert main(["experiment", "transfer", "--budget", "smoke", "--data", "digits", "--out", str(tmp_path)]) == 2
    assert "--data does not apply" in capsys.readouterr().err


def test_every_budget_resolves_every_cell_and_strategy_without_training(tmp_path):
    from cnntricks import config
    from cnntricks.experiments import BUDGETS
    files = {"source": tmp_path / "source.npz", "similar": tmp_path / "similar.npz"}
    for budget in BUDGETS:
        size = transfer.BUDGETS[budget]
        assert size.small_per_class < size.big_per_class
        for cell in transfer.CELLS:
            overrides, classes = transfer.cell_overrides(*cell, size, files)
            for _, strategy in transfer.STRATEGIES:
                cfg = config.load(None, transfer.COMMON + overrides + ["model.pretrained=/src",
                                                                      f"transfer.strategy={strategy}"])
                per_class = size.small_per_class if cell[1] == "small" else size.big_per_class
                assert cfg.data.subset == per_class * classes and cfg.transfer.strategy == strategy
