"""Ensembles (seed §8): members (runs, checkpoints of one run, seeds of one config), fusion (late:
mean, vote, weighted; stacking; early: features), and the ensemble directory that evaluate, predict
and the report read like a run."""
from cnntricks.ensemble.directory import Ensemble, build_ensemble, is_ensemble, load_ensemble
from cnntricks.ensemble.fusion import FUSIONS, Outputs, calibration_error

__all__ = ["Ensemble", "FUSIONS", "Outputs", "build_ensemble", "calibration_error", "is_ensemble", "load_ensemble"]
