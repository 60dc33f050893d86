"""Reproductions of the seed's claims, by name: `cnntricks experiment NAME`.

Every experiment is a function registered in `EXPERIMENTS` with one signature, so the command
line and a notebook call them all the same way:

    run(out_dir: Path, *, seed: int = 0, seeds: int = 1, budget: str = "small",
        data: str | None = None) -> dict

- `seed`, `seeds`: the experiment repeats over seeds seed, seed+1, ..., seed+seeds-1 and reports
  means (a single seed's number is an anecdote);
- `budget`: "smoke" (seconds, for tests), "small" (the default: a readable result in minutes on
  a 2-core CPU; docs/results.md has each study's time), "full" (meant for a GPU);
- `data`: a `data.source` name (fashion-mnist, digits, ...) for the experiments that read data,
  None for the experiment's default.

It writes its figures and numbers under `out_dir` and returns a dict with at least
`files` ({what: path}) and `summary` ({"header": [...], "rows": [[...], ...]}, the short table the
command line prints), plus its own numbers.
"""
from cnntricks.registry import Registry

EXPERIMENTS = Registry("experiment")
BUDGETS = ("smoke", "small", "full")


def describe(name: str) -> str:
    """The first line of experiment `name`'s docstring."""
    return (EXPERIMENTS.get(name).__doc__ or "").strip().splitlines()[0] if name in EXPERIMENTS else ""


def check_budget(budget: str) -> str:
    if budget not in BUDGETS:
        raise ValueError(f"budget '{budget}' is not one of {', '.join(BUDGETS)}")
    return budget


# importing a study registers it
from cnntricks.experiments import init_stats  # noqa: E402
from cnntricks.experiments import (activations, augmentation, ensemble, imbalance, init_depth,  # noqa: E402
                                   learning_rate, preprocessing, regularization, transfer)

__all__ = ["BUDGETS", "EXPERIMENTS", "describe", "init_stats", "activations", "augmentation", "imbalance",
           "init_depth", "learning_rate", "preprocessing", "regularization", "transfer"]
