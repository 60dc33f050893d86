"""The ensemble report (seed §8): `<ensemble>/report/index.html` with the members against the ensemble
(accuracy, NLL, calibration error: the gain), the members' pairwise disagreement (the diversity an
ensemble lives on), the test confusion matrix and the per-class table. Drawn from summary.json and
ensemble.json only, like a run's report from its files.
"""
from __future__ import annotations

import base64
import datetime
from pathlib import Path

import numpy as np

from cnntricks.report import model_figures
from cnntricks.report.figures import new_figure, plain, save_png
from cnntricks.report.html import CSS, esc, percent, per_class_html
from cnntricks.rundir import ENSEMBLE, SUMMARY, read_json, write_atomic


def members_figure(summary: dict, title: str):
    """Test accuracy and NLL of each member and of the ensemble, side by side."""
    info = summary["ensemble"]
    names = [m["name"] for m in info["members"]] + [f"ensemble ({summary['fusion']})"]
    accs = [100 * m["acc"] for m in info["members"]] + [100 * summary["test_acc"]]
    losses = [m["loss"] for m in info["members"]] + [summary["test_loss"]]
    figure, (left, right) = new_figure(columns=2, size=(12.1, 4.4))
    figure.suptitle(f"members and ensemble: {plain(title)}", fontsize=12)
    colors = ["#9aa0a6"] * len(info["members"]) + ["#1f77b4"]
    positions = np.arange(len(names))
    left.barh(positions, accs, color=colors)
    low = min(accs)
    left.set_xlim(max(0.0, low - 3 * (max(accs) - low + 0.2)), min(100.0, max(accs) + 0.6 * (max(accs) - low + 0.2)))
    left.axvline(100 * info["best_member_acc"], color="#b95000", linestyle="--", linewidth=1,
                 label=f"best member ({100 * info['best_member_acc']:.2f}%)")
    for y, value in zip(positions, accs):
        left.text(value, y, f" {value:.2f}", va="center", fontsize=8)
    left.set(xlabel="test accuracy %", yticks=positions)
    left.set_yticklabels([plain(n) for n in names], fontsize=8)
    left.legend(loc="lower right", fontsize=8)
    left.set_title(f"gain over the best member: {100 * info['gain']:+.2f} points", fontsize=9, color="dimgray")
    right.barh(positions, losses, color=colors)
    right.set(xlabel="test NLL (lower is better)", yticks=positions)
    right.set_yticklabels([])
    return figure


def disagreement_figure(summary: dict, title: str):
    """The share of test images on which each pair of members predicts different classes."""
    info = summary["ensemble"]
    matrix = np.asarray(info["disagreement"], dtype=float)
    names = [plain(m["name"]) for m in info["members"]]
    k = len(names)
    side = float(np.clip(2.5 + 0.5 * k, 4.5, 11))
    figure, (axes,) = new_figure(size=(side + 1.4, side))
    figure.suptitle(f"pairwise disagreement: {plain(title)}", fontsize=12)
    image = axes.imshow(100 * matrix, cmap="Oranges", vmin=0)
    axes.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(k), names, fontsize=8)
    axes.set_title(f"% of test images two members label differently (mean {100 * info['mean_disagreement']:.1f}%); "
                   "near 0: the members add little to each other", fontsize=9, color="dimgray")
    if k <= 12:
        for (i, j), value in np.ndenumerate(matrix):
            if i != j:
                axes.text(j, i, f"{100 * value:.1f}", ha="center", va="center", fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


class _Table:
    """What per_class_html reads from a run: its summary and classes."""

    def __init__(self, summary: dict):
        self.summary, self.classes = summary, summary.get("classes", [])


def write_ensemble_report(path: str | Path) -> Path:
    """Draw the figures and write `<path>/report/index.html`; returns its path."""
    path = Path(path)
    summary, record = read_json(path / SUMMARY), read_json(path / ENSEMBLE)
    if summary is None or record is None:
        raise FileNotFoundError(f"{path} has no {SUMMARY} or {ENSEMBLE}: not a finished ensemble")
    out = path / "report"
    out.mkdir(exist_ok=True)
    title = path.name
    drawn = [("members.png", "Members and ensemble", "The ensemble's bar beyond the dashed line is the gain "
              "seed §8 promises; an ensemble below its best member needs more diverse or better members.",
              members_figure(summary, title)),
             ("disagreement.png", "Diversity", "Members that label the same images the same way cannot correct "
              "each other: an ensemble gains only where they disagree.", disagreement_figure(summary, title)),
             ("confusion.png", "Test confusion matrix", "Which classes the ensemble mixes up, as a share of each true "
              "class.", model_figures.confusion_figure(np.asarray(summary["confusion"], dtype=float),
                                                       summary["classes"], title))]
    figures_html = []
    for file, heading, look_for, figure in drawn:
        save_png(figure, out / file)
        data = base64.b64encode((out / file).read_bytes()).decode("ascii")
        figures_html.append(f'<figure id="fig-{Path(file).stem}"><h3>{esc(heading)} <span class="file">{esc(file)}'
                            f'</span></h3><p class="look">{esc(look_for)}</p><img alt="{esc(heading)}" '
                            f'src="data:image/png;base64,{data}"></figure>')
    info = summary["ensemble"]
    cards = [("test accuracy", percent(summary["test_acc"])), ("best member", percent(info["best_member_acc"])),
             ("gain", f"{100 * info['gain']:+.2f} pt"), ("test NLL", f"{summary['test_loss']:.4f}"),
             ("calibration error", percent(summary["test_ece"])),
             ("disagreement", percent(info["mean_disagreement"]))]
    fit = record.get("fit") or {}
    rows = "".join(
        f"<tr><td>{esc(m['name'])}</td><td>{esc(r['model'])}</td><td>{esc('x'.join(map(str, r['input'])))}</td>"
        f"<td>{esc(r['run'])}@{esc(r['checkpoint'])}</td><td class='number'>{percent(m['acc'])}</td>"
        f"<td class='number'>{m['loss']:.4f}</td><td class='number'>{percent(m['ece'])}</td>"
        + (f"<td class='number'>{fit['weights'][fit['groups'][i] if 'groups' in fit else i]:.3f}</td>"
           if "weights" in fit else "") + "</tr>"
        for i, (m, r) in enumerate(zip(info["members"], record["members"])))
    fitted = (f"fitted on the {record['fitted_on']} split ({fit.get('fitted_images', '?')} images); the test split "
              "only scores" if record.get("fitted_on") else "nothing fitted")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnntricks ensemble report: {esc(title)}</title>
<style>{CSS}</style></head>
<body><main>
<header><h1>{esc(title)}</h1>
<div class="path">{esc(path.resolve())} · ensemble of {len(info['members'])} · fusion {esc(record['fusion'])}
({esc(fitted)}) · report written {esc(datetime.datetime.now().isoformat(timespec="seconds"))}</div>
<div class="cards">{"".join(f'<div class="card"><div class="value">{esc(v)}</div><div class="label">{esc(k)}</div></div>' for k, v in cards)}</div>
</header>
<section id="members"><h2>Members</h2>
<table><thead><tr><th>member</th><th>model</th><th>input</th><th>run@checkpoint</th><th>test accuracy</th><th>NLL</th>
<th>calibration error</th>{("<th>its group's weight</th>" if "groups" in fit else "<th>weight</th>") if "weights" in fit else ""}</tr></thead><tbody>{rows}</tbody></table></section>
<section id="figures"><h2>Figures</h2>{"".join(figures_html)}</section>
<section id="per-class"><h2>Test accuracy per class</h2>{per_class_html(_Table(summary))}</section>
</main></body></html>
"""
    return write_atomic(out / "index.html", page)
