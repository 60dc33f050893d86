"""Models, activations and initialization (seed §3 Initializations, §4 During training, §5 Activations)."""
from cnntricks.nn.activations import ACTIVATIONS, create_activation
from cnntricks.nn.init import INITS, initialize, scheme_for
from cnntricks.nn.models import (MODELS, Classifier, ImageSizeWarning, count_parameters,
                                 create_model)
from cnntricks.nn import imagenet_resnets  # noqa: E402,F401  registers resnet18, resnet34, resnet50

__all__ = ["ACTIVATIONS", "create_activation", "INITS", "initialize", "scheme_for", "MODELS",
           "Classifier", "ImageSizeWarning", "count_parameters", "create_model"]
