"""Figures from a run directory (seed §7, "Insights from Figures")."""
from cnntricks.report.figures import plot_curves, read_history

__all__ = ["plot_curves", "read_history"]
