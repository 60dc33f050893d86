"""Pre-processing fitted on the training split (seed §2): normalization and whitening."""
from cnntricks.preprocess.normalize import Normalization, fit_normalization
from cnntricks.preprocess.whiten import Whitening, fit_patch_whitening, fit_whitening

__all__ = ["Normalization", "fit_normalization", "Whitening", "fit_patch_whitening", "fit_whitening"]
