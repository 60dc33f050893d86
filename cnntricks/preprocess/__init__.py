"""Pre-processing fitted on the training split (seed §2): normalization and whitening.

Registries: `NORMALIZATIONS` (preprocess.normalize, normalize.py) and `WHITENINGS`
(preprocess.whiten, pipeline.py).
"""
from cnntricks.preprocess.normalize import NORMALIZATIONS, Normalization, fit_normalization
from cnntricks.preprocess.pipeline import WHITENINGS
from cnntricks.preprocess.whiten import Whitening, fit_patch_whitening, fit_whitening

__all__ = ["NORMALIZATIONS", "Normalization", "fit_normalization", "WHITENINGS", "Whitening",
           "fit_patch_whitening", "fit_whitening"]
