"""Figures and the HTML report of a run directory (seed §7, "Insights from Figures")."""
from cnntricks.report.figures import plot_curves, read_history
from cnntricks.report.run_report import FIGURES, draw_figures, write_report

__all__ = ["FIGURES", "draw_figures", "plot_curves", "read_history", "write_report"]
