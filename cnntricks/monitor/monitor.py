"""Layer statistics every N training steps, in `stats.jsonl` (seed §3, §5, §7; `train.monitor`).

Seed §5 warns that with too high a learning rate "as much as 40% of your network can be dead",
and that sigmoid and tanh "saturate and kill gradients"; seed §3 judges initializations by how
activations spread along depth. None of it shows in a loss curve, so on sampled steps the
`Monitor` hooks every activation module (monitor/layers.py) and reads gradients and updates.

The loop calls, for each step (`step` = the 1-based number of the step about to run):

    armed = monitor.before_forward(step)       # arms the hooks on step 1 and every N-th step
    loss = ...forward...; loss.backward()
    monitor.after_backward(grad_scale)         # grad norms; weights snapshot
    optimizer.step(); apply_max_norm(...)
    monitor.after_step(step, epoch)            # update ratios; one record; hooks removed
    ...at each epoch end, before the checkpoint: lines = monitor.flush()
    ...on resume: monitor.truncate(lines); monitor.load_state_dict(saved)

Unsampled steps run with no hooks and cost nothing; a sampled step reads the device once.

`stats.jsonl`: one JSON object per sampled step, in step order:

    {"step": 50,                    # 1-based optimizer step the statistics were taken on
     "epoch": 1,                    # 1-based epoch that step belongs to (as in history.jsonl)
     "grad_norm_total": 1.93,       # ‖g‖₂ over ALL trainable parameters with a gradient (biases
                                    #   and norm layers too; what clip_grad_norm_ computes)
     "input": {"mean": 0.0, "std": 1.0, "min": -0.8, "max": 2.0},  # the model's input batch, as
                                    #   the first layer sees it (after pre-processing)
     "layers": {                    # every activation module, by qualified module name; a module
                                    #   called k > 1 times in one forward is "name#k" for call k
       "stages.0.3": {
         "type": "ReLU",            # the module's class name
         "mean": 0.41, "std": 0.62, # of the output's first SAMPLE (65536) elements in memory
                                    #   order: whole samples first, a random sample of a shuffled
                                    #   batch (all of it for small layers); std is unbiased (n - 1)
         "min": 0.0, "max": 5.3,    # over the whole batch
         "hist": [12, 3, ...],      # HIST_BINS (30) counts of those SAMPLE elements in equal bins
                                    #   from min to max (edges: histogram_edges(layer)); the last
                                    #   bin includes max
         "dead": 0.0625,            # ReLU family only (class name contains "relu"): share of units
         "units": 16,               #   (dim 1: channels / features) whose input was never > 0 for
                                    #   any input of the last DEAD_WINDOW sampled batches (of those
                                    #   seen so far, until the window fills); "units" counts them
         "saturated": 0.12},        # tanh / sigmoid only: share of the SAMPLE elements in
                                    #   saturation (|tanh| > 0.99; sigmoid < 0.01 or > 0.99)
       ...},
     "params": {                    # every trainable parameter with ndim > 1 (conv / linear weights)
       "stages.0.0.weight": {
         "grad_norm": 0.21,         # ‖∂loss/∂w‖₂ of this step (unscaled when a GradScaler ran)
         "weight_norm": 3.1,        # ‖w‖₂ after the step
         "update_ratio": 0.0012,    # ‖w_after - w_before‖₂ / ‖w_before‖₂: the optimizer step plus
                                    #   any projection (max-norm) after it; ~1e-3 is healthy
         "unit_spread": 0.05},      # max over inputs of the std across output units of their
       ...}}                        #   incoming weights: 0 exactly when all units are the same

Numbers carry 6 significant digits ("dead" is the exact ratio); a value that is NaN or infinite
(a diverged run), or that was not measured (no gradient; a zero weight for the ratio), is null.
Records are buffered and appended at `flush`. Read them with `read_stats(run_dir)` (rundir.py).
In the training loop the monitor is a plug-in (plugin.py): `train.monitor=every:N`.
"""
from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import torch
from torch import nn

from cnntricks.monitor.layers import activation_kind, find_activations, layer_statistics
from cnntricks.rundir import JsonlWriter, stats_path

# A unit counts as dead when it stayed inactive for this many sampled batches in a row: the seed's
# "never activate across the entire training dataset", estimated from 5 x 128 inputs (at the
# default batch) spread over 250 steps, instead of a pass over the data.
DEAD_WINDOW = 5
HEAD = 5  # layer_statistics' vector: mean, std, min, max, saturated, then HIST_BINS counts


def _number(value: float) -> float | None:
    return float(f"{value:.6g}") if math.isfinite(value) else None  # JSON has no NaN


class Monitor:
    def __init__(self, model: nn.Module, path: str | Path, every: int, window: int = DEAD_WINDOW):
        if every < 1 or window < 1:
            raise ValueError(f"monitor: every and window must be at least 1 step, got {every} and {window}")
        self.model, self.path, self.every, self.window = model, stats_path(path), every, window
        self.active: dict[str, deque[torch.Tensor]] = {}  # layer -> its last `window` (units,) masks
        self.file = JsonlWriter(self.path)  # records buffered until flush, as JSON lines
        self._handles: list = []
        self._disarm()

    # ---- the step: before_forward -> after_backward -> after_step ----------------------------

    def before_forward(self, step: int) -> bool:
        """Arm the forward hooks when `step` is sampled (step 1 and every N-th); return whether."""
        if self.armed or self._handles:  # a step that raised before after_step must not leave hooks behind
            self._disarm()
        self.armed = step == 1 or step % self.every == 0
        if self.armed:
            # Looked up on each sampled step: a remedy or reset_head may have changed the model.
            self._handles = [module.register_forward_hook(self._hook(name, module))
                             for name, module in find_activations(self.model)]
            self._handles.append(self.model.register_forward_pre_hook(self._input_hook))
            self._weights = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad and p.ndim > 1]
        return self.armed

    def after_backward(self, grad_scale: float | torch.Tensor = 1.0) -> None:
        """Gradient norms (divided by `grad_scale`, a GradScaler's scale) and a copy of the
        weights, to measure the update in after_step."""
        if not self.armed:
            return
        with torch.no_grad():
            self._grad_norms = {name: torch.linalg.vector_norm(p.grad, dtype=torch.float32) / grad_scale
                                for name, p in self.model.named_parameters() if p.requires_grad and p.grad is not None}
            self._before = {name: p.detach().clone() for name, p in self._weights}

    def after_step(self, step: int, epoch: int) -> None:
        """After the optimizer step (and max-norm): remove the hooks and buffer this step's record."""
        if not self.armed:
            return
        for handle in self._handles:
            handle.remove()
        # Everything into one float32 vector (histogram counts <= SAMPLE are exact), read once.
        parts = [self._input] if self._input is not None else []
        parts += [stats for _, _, stats, _ in self._layers.values()]
        parts += [active.float() for _, _, _, active in self._layers.values() if active is not None]
        with torch.no_grad():
            for name, weight in self._weights:
                nan = torch.full((), math.nan, device=weight.device)  # made there: no host copy
                before = self._before.get(name)
                norms = [nan, nan, nan] if before is None else [
                    torch.linalg.vector_norm(x, dtype=torch.float32) for x in (weight, before, weight - before)]
                # 0 exactly when every unit has the same incoming weights (zero / constant init)
                spread = weight.detach().float().reshape(len(weight), -1).std(dim=0).max()
                parts.append(torch.stack([self._grad_norms.get(name, nan), *norms, spread]))
            if self._grad_norms:  # ‖g‖ over every parameter with a gradient, from the norms of each
                parts.append(torch.stack(list(self._grad_norms.values())).square().sum().sqrt().reshape(1))
        device = parts[0].device if parts else None
        values = torch.cat([p.to(device) for p in parts]).tolist() if parts else []  # the one sync
        self.file.add_line(self._record(step, epoch, values), compact=True)
        self._disarm()

    def _hook(self, name: str, module: nn.Module):
        kind = activation_kind(module)

        def record(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                return
            calls = self._calls[name] = self._calls.get(name, 0) + 1
            with torch.no_grad():
                stats, active = layer_statistics(module, kind, inputs[0] if inputs else output, output)
            self._layers[name if calls == 1 else f"{name}#{calls}"] = (type(module).__name__, kind, stats, active)
        return record

    def _input_hook(self, module, args):
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is not None and self._input is None:
            with torch.no_grad():
                x = x.detach().float()
                self._input = torch.stack([x.mean(), x.std(), x.min(), x.max()])

    def _disarm(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.armed, self._handles, self._calls, self._input = False, [], {}, None
        self._layers: dict[str, tuple] = {}  # key -> (type name, kind, stats, active mask or None)
        self._weights: list[tuple[str, nn.Parameter]] = []
        self._grad_norms: dict[str, torch.Tensor] = {}
        self._before: dict[str, torch.Tensor] = {}

    def _record(self, step: int, epoch: int, values: list[float]) -> dict:
        """The JSON record from the flat values, read in the order after_step concatenated them."""
        position = 0

        def take(count: int) -> list[float]:
            nonlocal position
            position += count
            return values[position - count:position]

        model_input = None
        if self._input is not None:
            model_input = dict(zip(("mean", "std", "min", "max"), map(_number, take(4))))
        layers = {}
        for key, (type_name, kind, stats, _) in self._layers.items():
            mean, std, low, high, saturated = take(HEAD)
            layer = {"type": type_name, "mean": _number(mean), "std": _number(std), "min": _number(low),
                     "max": _number(high), "hist": [int(c) for c in take(len(stats) - HEAD)]}
            if kind in ("tanh", "sigmoid"):
                layer["saturated"] = _number(saturated)
            layers[key] = layer
        for key, (_, _, _, active) in self._layers.items():
            if active is not None:
                layers[key].update(self._dead_units(key, torch.tensor(take(len(active))) > 0.5))
        params = {}
        for name, _ in self._weights:
            grad, after, before, delta, spread = take(5)
            ratio = delta / before if before > 0 else math.nan
            params[name] = {"grad_norm": _number(grad), "weight_norm": _number(after),
                            "update_ratio": _number(ratio), "unit_spread": _number(spread)}
        total = take(1)[0] if self._grad_norms else math.nan
        return {"step": step, "epoch": epoch, "grad_norm_total": _number(total), "input": model_input,
                "layers": layers, "params": params}

    def _dead_units(self, key: str, active: torch.Tensor) -> dict:
        window = self.active.get(key)
        if window is None or (window and len(window[0]) != len(active)):  # new, or the layer changed size
            window = self.active[key] = deque(maxlen=self.window)
        window.append(active)
        ever_active = torch.stack(list(window)).any(dim=0)
        dead = len(active) - int(ever_active.sum())
        return {"dead": dead / len(active), "units": len(active)}  # exact: not rounded like the rest

    # ---- the file and the resume state --------------------------------------------------------

    def flush(self) -> int:
        """Append the buffered records to the stats file and fsync; return its line count."""
        return self.file.flush()

    def truncate(self, lines: int) -> None:
        """Keep the first `lines` lines (those a checkpoint vouches for); rewrite atomically."""
        self.file.truncate(lines)

    def state_dict(self) -> dict:
        """The dead-unit windows, JSON-ready: each mask a string of '0' / '1' per unit."""
        return {"window": self.window,
                "active": {key: ["".join("1" if a else "0" for a in mask.tolist()) for mask in masks]
                           for key, masks in self.active.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore the windows of `state_dict()`; an empty dict (a checkpoint without them) starts afresh."""
        self.active = {key: deque((torch.tensor([c == "1" for c in mask]) for mask in masks), maxlen=self.window)
                       for key, masks in state.get("active", {}).items()}


def histogram_edges(layer: dict) -> list[float]:
    """The HIST_BINS + 1 bin edges of a layer record's "hist" (equal bins from "min" to "max")."""
    bins = len(layer["hist"])
    if layer["min"] is None or layer["max"] is None:  # a diverged output
        return []
    return [layer["min"] + (layer["max"] - layer["min"]) * i / bins for i in range(bins + 1)]
