"""Fine-tuning (seed §4): weights in from another run or tool, and which layers train how fast
(`transfer.strategy`); next, linear probes and the advisor that picks a cell of the seed's 2x2
table (data size x similarity)."""
from cnntricks.transfer.probe import StageProbe, pretrained_model, probe
from cnntricks.transfer.strategy import STRATEGIES, Freeze, Plan, layer_groups, plan_transfer
from cnntricks.transfer.weights import PretrainedWeights, load_pretrained, read_weights, source_preprocess

__all__ = ["STRATEGIES", "Freeze", "Plan", "PretrainedWeights", "StageProbe", "pretrained_model", "probe", "layer_groups", "load_pretrained", "plan_transfer",
           "read_weights", "source_preprocess"]
