"""The report page as one self-contained HTML string (seed §7: read the run from its figures).

Findings come first, then the figures they cite, the test accuracy per class and the full
configuration. The page has no scripts and makes no requests: figures are base64 data URIs, the
CSS is inline, and a Content-Security-Policy forbids anything else, so it opens the same from a
mail attachment or an air-gapped machine. Every string that comes from the run (class names are
folder names; paths, config values, finding text) goes through `esc`: a class folder named
`<script>` shows as text.
"""
from __future__ import annotations

import base64
import html
import math
import shlex
from pathlib import Path

SEVERITY_COLORS = {"error": "#b3261e", "warning": "#b95000", "info": "#1a5fb4"}

CSS = """
:root { --train: #1f77b4; --val: #ff7f0e; --ink: #1d1d1f; --muted: #5f6368; --line: #dadce0; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: #f6f7f9; }
main { max-width: 1290px; margin: 0 auto; padding: 24px 16px 60px; }  /* figures are 1210 px wide */
h1 { font-size: 26px; margin: 0 0 2px; word-break: break-all; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 17px; margin: 0; }
.path, .muted { color: var(--muted); font-size: 13px; word-break: break-all; }
nav { margin: 10px 0 0; font-size: 14px; position: sticky; top: 0; z-index: 1; background: #f6f7f9;
      padding: 6px 0; border-bottom: 1px solid var(--line); }  /* the contents stay in view while reading */
nav a { margin-right: 14px; color: #1a5fb4; white-space: nowrap; }
nav .figures a { margin-right: 10px; font-size: 13px; }
section, figure, .finding { scroll-margin-top: 96px; }  /* a link's target is not hidden under the contents */
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.card .value { font-size: 22px; font-weight: 600; }
.card .label { color: var(--muted); font-size: 13px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; color: #fff; font-size: 12px;
         font-weight: 700; text-transform: uppercase; letter-spacing: .04em; vertical-align: middle; }
.finding { background: #fff; border: 1px solid var(--line); border-left: 6px solid; border-radius: 8px;
           padding: 14px 18px; margin: 12px 0; }
.finding header { display: flex; gap: 10px; align-items: center; margin-bottom: 8px; }
.finding dl { display: grid; grid-template-columns: 110px 1fr; gap: 4px 12px; margin: 0; }
.finding dt { color: var(--muted); font-weight: 600; }
.finding dd { margin: 0; }
code, pre { font: 13px/1.45 ui-monospace, "DejaVu Sans Mono", Menlo, monospace; }
code.command { background: #f1f3f4; padding: 2px 6px; border-radius: 4px; word-break: break-all; }
.verdict { background: #e7f4ea; border: 1px solid #b7dfc0; border-radius: 8px; padding: 12px 16px; }
.error-box { background: #fdecea; border: 1px solid #f4b4ae; border-radius: 8px; padding: 12px 16px; }
figure { background: #fff; border: 1px solid var(--line); border-radius: 8px; margin: 14px 0; padding: 14px 12px; }
figure img { display: block; max-width: 100%; height: auto; margin-top: 10px; }
figure .look { margin: 4px 0 0; color: var(--muted); }
figure.skipped { background: #fafafa; border-style: dashed; }
.note { color: #8a5a00; margin: 6px 0 0; }
.file { color: var(--muted); font-weight: 400; font-size: 13px; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); min-width: 520px; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; }
th { background: #f1f3f4; font-size: 13px; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.worst td { background: #fff4e5; }
.bar { display: inline-block; height: 10px; background: var(--train); border-radius: 2px; vertical-align: middle; }
.track { display: inline-block; width: 160px; background: #e8eaed; border-radius: 2px; margin-left: 8px;
         text-align: left; line-height: 0; }
pre { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; overflow-x: auto; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def percent(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "—"


def number(value, spec: str, unit: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    return f"{int(value) if spec == 'd' else value:{spec}}{unit}"


def headline(run) -> tuple[list[tuple[str, str]], str]:
    """([(label, value)], a note): from summary.json, or from the history of an unfinished run."""
    summary = run.summary
    if summary:
        return ([("test accuracy", percent(summary.get("test_acc"))),
                 ("best validation accuracy", percent(summary.get("best_val_acc"))),
                 ("epochs", number(summary.get("epochs"), "d")),
                 ("training time", number(summary.get("train_seconds"), ".1f", " s")),
                 ("images / s", number(summary.get("images_per_second"), ",.0f")),
                 ("stopped because", str(summary.get("stop_reason", "—"))),
                 *transfer_rows(summary.get("transfer"))], "")
    try:
        epochs = run.history[1]
    except Exception:
        epochs = []
    validation = [e["val_acc"] for e in epochs if isinstance(e.get("val_acc"), (int, float))]
    return ([("test accuracy", "—"), ("best validation accuracy", percent(max(validation, default=None))),
             ("epochs", number(epochs[-1].get("epoch") if epochs else None, "d")),
             ("training time", number(sum(e.get("seconds") or 0 for e in epochs) if epochs else None, ".1f", " s")),
             ("images / s, last epoch", number(epochs[-1].get("images_per_second") if epochs else None, ",.0f")),
             ("stopped because", "—")],
            "no summary.json: the run has not finished, or another loop wrote it; numbers from history.jsonl")


def transfer_rows(transfer) -> list[tuple[str, str]]:
    """Fine-tuning: the weights, the strategy, and the advisor's cell and reason when it chose."""
    if not isinstance(transfer, dict):
        return []
    rows = [("fine-tuned from", str(transfer.get("pretrained"))), ("transfer.strategy", str(transfer.get("strategy")))]
    advice = transfer.get("advice")
    if isinstance(advice, dict):
        rows.append(("advisor (transfer.strategy=auto)", str(advice.get("reason", "—"))))
    return rows


def command_for(finding, config_path: Path) -> str:
    """The shell command that applies a finding's change to this run's configuration."""
    start = shlex.quote(str(config_path)) if config_path.is_file() else "..."
    return " ".join(["cnntricks train", start, *(shlex.quote(o) for o in finding.overrides())])


def finding_html(finding, config_path: Path, anchors: dict[str, str]) -> str:
    severity = finding.severity if finding.severity in SEVERITY_COLORS else "info"
    color = SEVERITY_COLORS[severity]
    rows = [("Evidence", finding.evidence), ("Why", finding.explanation), ("Advice", finding.advice)]
    items = "".join(f"<dt>{name}</dt><dd>{esc(text)}</dd>" for name, text in rows if text)
    if finding.change:
        items += f'<dt>Apply</dt><dd><code class="command">{esc(command_for(finding, config_path))}</code></dd>'
    where = [f"step {esc(finding.step)}" if finding.step is not None else "",
             f"epoch {esc(finding.epoch)}" if finding.epoch is not None else ""]
    if any(where):
        items += f"<dt>When</dt><dd>{', '.join(w for w in where if w)}</dd>"
    if finding.figure:
        link = (f'<a href="#{anchors[finding.figure]}">{esc(finding.figure)}</a>' if finding.figure in anchors
                else f"{esc(finding.figure)} (not in this report)")
        items += f"<dt>Figure</dt><dd>{link}</dd>"
    return (f'<article class="finding" id="finding-{esc(finding.id)}" style="border-left-color:{color}">'
            f'<header><span class="badge" style="background:{color}">{severity}</span>'
            f"<h3>{esc(finding.title)}</h3><span class=\"muted\">{esc(finding.id)}</span></header>"
            f"<dl>{items}</dl></article>")


def findings_html(findings: list, doctor_error: str | None, config_path: Path, anchors: dict[str, str]) -> str:
    parts = ['<section id="findings"><h2>Findings</h2>']
    if doctor_error:
        parts.append(f'<p class="error-box"><strong>The doctor could not read this run.</strong> '
                     f"{esc(doctor_error)}</p>")
    ranked = sorted(findings, key=lambda f: -f.rank)  # worst first; stable within a severity
    if not doctor_error and not any(f.severity != "info" for f in ranked):
        parts.append('<p class="verdict"><strong>No findings above info.</strong> The doctor found nothing '
                     "wrong in this run; the figures below show what it read.</p>")
    parts += [finding_html(f, config_path, anchors) for f in ranked]
    return "".join(parts) + "</section>"


def figure_html(drawn) -> str:
    spec = drawn.spec
    head = (f'<figure id="{spec.anchor}" class="{"plot" if drawn.path else "plot skipped"}">'
            f'<h3>{esc(spec.heading)} <span class="file">{esc(spec.file)}</span></h3>'
            f'<p class="look">{esc(spec.look_for)}</p>')
    if drawn.path is None:
        return head + f'<p class="note">{esc(drawn.note)}</p></figure>'
    data = base64.b64encode(Path(drawn.path).read_bytes()).decode("ascii")
    return head + f'<img alt="{esc(spec.heading)}" src="data:image/png;base64,{data}"></figure>'


def per_class_html(run) -> str:
    rows = (run.summary or {}).get("per_class") or []
    if not rows:
        return '<p class="muted">No per-class metrics: summary.json is missing or the run had no test split.</p>'
    accuracies = [r.get("acc") for r in rows if isinstance(r.get("acc"), (int, float))]
    lowest = min(accuracies, default=None)
    body = []
    for row in rows:
        index, accuracy = row.get("class"), row.get("acc")
        name = row.get("name")
        if name is None and isinstance(index, int) and 0 <= index < len(run.classes):
            name = run.classes[index]
        width = f"{160 * accuracy:.0f}" if isinstance(accuracy, (int, float)) and math.isfinite(accuracy) else "0"
        body.append(f'<tr class="{"worst" if accuracy is not None and accuracy == lowest else ""}">'
                    f'<td class="number">{esc(index)}</td><td>{esc(name if name is not None else "—")}</td>'
                    f'<td class="number">{esc(row.get("count", "—"))}</td>'
                    f'<td class="number">{percent(accuracy)}<span class="track"><span class="bar" '
                    f'style="width:{width}px"></span></span></td></tr>')
    return ("<table><thead><tr><th>#</th><th>class</th><th>test images</th><th>test accuracy</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
            '<p class="muted">The highlighted row is the class the model recognizes worst.</p>')


def render_page(run, findings: list, doctor_error: str | None, drawn: list, generated: str) -> str:
    """The whole page for `run` (run_report.Run), its findings and its drawn figures."""
    cards, note = headline(run)
    anchors = {d.spec.file: d.spec.anchor for d in drawn}
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITY_COLORS}
    tally = " ".join(f'<span class="badge" style="background:{SEVERITY_COLORS[s]}">{n} {s}</span>'
                     for s, n in counts.items() if n)
    config_path = run.path / "config.yaml"
    config = (f"<pre>{esc(config_path.read_text(errors='replace'))}</pre>" if config_path.is_file()
              else '<p class="muted">No config.yaml in the run directory.</p>')
    skipped = sum(d.path is None for d in drawn)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cnntricks report: {esc(run.name)}</title>
<style>{CSS}</style></head>
<body><main>
<header><h1>{esc(run.name)}</h1>
<div class="path">{esc(run.path.resolve())} · report written {esc(generated)}</div>
<div class="cards">{"".join(f'<div class="card"><div class="value">{esc(v)}</div><div class="label">{esc(k)}</div></div>' for k, v in cards)}</div>
{f'<p class="muted">{esc(note)}</p>' if note else ""}
</header>
<nav><a href="#findings">Findings</a><a href="#figures">Figures</a><a href="#per-class">Per class</a><a href="#config">Configuration</a> {tally}
<div class="figures">{"".join(f'<a href="#{d.spec.anchor}">{esc(d.spec.heading)}</a>' for d in drawn if d.path is not None)}</div></nav>
{findings_html(findings, doctor_error, config_path, anchors)}
<section id="figures"><h2>Figures</h2>
{f'<p class="muted">{skipped} of {len(drawn)} figures skipped: their input files are not in the run directory.</p>' if skipped else ""}
{"".join(figure_html(d) for d in drawn)}
</section>
<section id="per-class"><h2>Test accuracy per class</h2>{per_class_html(run)}</section>
<section id="config"><h2>Configuration</h2>{config}</section>
</main></body></html>
"""
