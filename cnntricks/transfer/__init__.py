"""Fine-tuning (seed §4): weights in from another run or tool, and which layers train how fast
(`transfer.strategy`); next, linear probes and the advisor that picks a cell of the seed's 2x2
table (data size x similarity)."""
from cnntricks.transfer.advisor import Advice, advise
from cnntricks.transfer.head import LinearHead, fit_head, transfer_plugins
from cnntricks.transfer.hub import PUBLISHED, fetch
from cnntricks.transfer.probe import StageProbe, pretrained_model, probe
from cnntricks.transfer.strategy import STRATEGIES, Freeze, Plan, cut_above_stage, layer_groups, parse_strategy, plan_transfer
from cnntricks.transfer.weights import PretrainedWeights, load_pretrained, read_weights, source_preprocess

__all__ = ["Advice", "advise", "STRATEGIES", "Freeze", "LinearHead", "Plan", "cut_above_stage", "fit_head", "parse_strategy", "transfer_plugins", "PretrainedWeights", "StageProbe", "pretrained_model", "probe", "layer_groups", "load_pretrained", "plan_transfer",
           "read_weights", "source_preprocess", "PUBLISHED", "fetch"]
