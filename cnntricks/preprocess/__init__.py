"""Pre-processing fitted on the training split (seed §2)."""
from cnntricks.preprocess.normalize import Normalization, fit_normalization

__all__ = ["Normalization", "fit_normalization"]
