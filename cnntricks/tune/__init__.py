"""Hyper-parameter search on Optuna (`cnntricks tune`): a YAML search space over any config key, TPE,
pruning on per-epoch validation accuracy, every trial a run directory, SQLite / journal file /
PostgreSQL storage, resumable after a kill."""
from cnntricks.tune.space import Param, load_space
from cnntricks.tune.study import TrialReporter, top_runs, tune

__all__ = ["Param", "TrialReporter", "load_space", "top_runs", "tune"]
