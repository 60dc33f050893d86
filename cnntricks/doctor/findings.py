"""What the doctor says: a `Finding` per problem, with its evidence, the seed's explanation, the
advice and the config change that applies it.

A finding is plain data (`to_dict` gives JSON), so `cnntricks doctor RUN --json`, the report
and scripts all read the same thing. Ids are stable: scripts may rely on them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "error")  # in rising order; a healthy run has nothing above info

# Every id a check may report (README: "The doctor"). The last two are about the evidence itself
# (data_checks.py): parts of the run directory left out as unreadable, checks that could not run.
IDS = ("lr_diverged", "lr_too_high", "lr_too_low", "batch_too_small", "overfitting", "underfitting",
       "plateau", "dead_relu", "saturation", "vanishing_gradient", "exploding_gradient", "bad_init",
       "symmetric_init", "noisy_filters", "unnormalized_input", "nonfinite", "at_chance", "too_short",
       "over_regularized", "class_imbalance", "ensemble_no_gain", "ensemble_alike", "unreadable", "unchecked")


@dataclass
class Finding:
    id: str                 # one of IDS
    severity: str           # info | warning | error
    title: str              # one line: what is wrong
    evidence: str           # the numbers that show it
    explanation: str        # why it happens, in the seed's words where it has them
    advice: str             # what to do
    change: dict[str, Any] = field(default_factory=dict)  # config overrides that apply the advice
    figure: str | None = None  # the report figure that shows it (a file name in report/)
    step: int | None = None    # the optimizer step at which the evidence was complete
    epoch: int | None = None   # the epoch at which it was complete

    def __post_init__(self):
        if self.id not in IDS:
            raise ValueError(f"finding id '{self.id}' is not one of {', '.join(IDS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"finding severity '{self.severity}' is not one of {', '.join(SEVERITIES)}")

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)

    def to_dict(self) -> dict:
        return asdict(self)

    def overrides(self) -> list[str]:
        """The change as command-line overrides: ["optim.lr=0.01", ...]."""
        return [f"{key}={value}" for key, value in self.change.items()]


def worst(findings: list[Finding]) -> str | None:
    """The highest severity among `findings`, or None."""
    return max(findings, key=lambda f: f.rank).severity if findings else None


def format_findings(findings: list[Finding], minimum: str = "info", command: str = "cnntricks train") -> str:
    """The findings at `minimum` severity or above, as the terminal shows them."""
    shown = [f for f in findings if f.rank >= SEVERITIES.index(minimum)]
    if not shown:
        return "doctor: no findings" + (" above info" if minimum == "info" and findings else "") + \
               " — the run looks healthy"
    lines = [f"doctor: {len(shown)} finding{'s' if len(shown) != 1 else ''}"]
    for f in shown:
        where = (f" (step {f.step}, epoch {f.epoch})" if f.step is not None else
                 f" (epoch {f.epoch})" if f.epoch is not None else "")
        lines.append(f"\n{f.severity.upper():<8}{f.id}: {f.title}{where}")
        lines.append(f"        evidence: {f.evidence}" + (f"  [report/{f.figure}]" if f.figure else ""))
        lines.append(f"        why:      {f.explanation}")
        lines.append(f"        advice:   {f.advice}")
        if f.change:
            lines.append(f"        try:      {command} ... {' '.join(f.overrides())}")
    return "\n".join(lines)
