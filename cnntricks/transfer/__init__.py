"""Fine-tuning (seed §4): weights in from another run, a file or a published name; which layers
train how fast (`transfer.strategy`); linear probes per stage; and the advisor that measures data
size and similarity and picks a cell of the seed's 2x2 table (`transfer.strategy=auto`)."""
from cnntricks.transfer.advisor import Advice, advise
from cnntricks.transfer.head import LinearHead, fit_head, transfer_plugins
from cnntricks.transfer.hub import PUBLISHED, fetch
from cnntricks.transfer.probe import StageProbe, pretrained_model, probe
from cnntricks.transfer.strategy import (STRATEGIES, Freeze, Plan, cut_above_stage, layer_groups, parse_strategy,
                                         plan_transfer)
from cnntricks.transfer.weights import (PretrainedWeights, input_preprocess, load_pretrained, read_weights,
                                        source_preprocess)

__all__ = ["Advice", "Freeze", "LinearHead", "PUBLISHED", "Plan", "PretrainedWeights", "STRATEGIES", "StageProbe",
           "advise", "cut_above_stage", "fetch", "fit_head", "input_preprocess", "layer_groups", "load_pretrained",
           "parse_strategy", "plan_transfer", "pretrained_model", "probe", "read_weights", "source_preprocess",
           "transfer_plugins"]
