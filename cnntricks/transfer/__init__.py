"""Fine-tuning (seed §4): weights in from another run or tool; next, the strategies of the seed's
2x2 table (data size x similarity) and the advisor that picks one."""
from cnntricks.transfer.weights import PretrainedWeights, load_pretrained, read_weights

__all__ = ["PretrainedWeights", "load_pretrained", "read_weights"]
