"""Training-time layer statistics (seed §3, §5, §7): activations, dead ReLUs, saturation,
gradient norms and update ratios, sampled every N steps into `stats.jsonl` (format: monitor.py),
attached to the training loop as a plug-in (plugin.py)."""
from cnntricks.monitor.layers import (HIST_BINS, SAMPLE, SIGMOID_SATURATION, TANH_SATURATION, activation_kind,
                                      find_activations)
from cnntricks.monitor.monitor import DEAD_WINDOW, Monitor, histogram_edges
from cnntricks.monitor.plugin import MonitorPlugin
from cnntricks.rundir import STATS as STATS_FILE
from cnntricks.rundir import read_stats  # the reader of the format (monitor.py's docstring)

__all__ = ["DEAD_WINDOW", "HIST_BINS", "Monitor", "MonitorPlugin", "SAMPLE", "SIGMOID_SATURATION", "STATS_FILE",
           "TANH_SATURATION", "activation_kind", "find_activations", "histogram_edges", "read_stats"]
