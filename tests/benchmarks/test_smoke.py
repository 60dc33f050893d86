"""The benchmark scripts run, print parseable figures, and measure what they say they measure.

The --smoke runs are subprocesses, as a user runs them; the checks of the FLOP count (against a
count by hand) and of the bare loop (against `fit`, weight for weight) import the scripts.
"""
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from cnntricks import config
from cnntricks.data import Splits, Store, load_splits
from cnntricks.nn.models import create_model
from cnntricks.train.device import cpu_has_bf16
from cnntricks.session import train

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
NUMBER = r"(\d+(?:\.\d+)?)"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # must not train: all work is in main()
    return module


def run_script(*args: str, timeout: int, checkout: bool = False) -> str:
    """Run a script as a user does; `checkout`: import this checkout's cnntricks, not whichever
    copy is installed (`python benchmarks/x.py` puts benchmarks/, not the repository, on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCHMARKS.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                            env=env if checkout else None)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def find(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text, re.M)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    return match.groups()


@pytest.mark.parametrize("script", ["time_to_accuracy", "overhead"])
def test_help_describes_the_measurement(script):
    text = run_script(str(BENCHMARKS / f"{script}.py"), "--help", timeout=60)
    assert "usage:" in text and "--smoke" in text and "Exit status" in text


def test_time_to_accuracy_smoke_prints_and_saves_the_same_numbers(tmp_path):
    out = tmp_path / "tta.json"
    text = run_script(str(BENCHMARKS / "time_to_accuracy.py"), "--smoke", "--out", str(out), timeout=120)
    saved = json.loads(out.read_text())

    device, precision, threads = find(r"^device (\S+) .*precision (\w+), torch \S+, (\d+) threads$", text)
    assert (device, precision) == (saved["environment"]["device"], saved["environment"]["precision"])
    reached, accuracy, seconds, rate = find(
        rf"^\s+0\s+(not reached|\S+ s \(epoch \d+\))\s+{NUMBER}%\s+{NUMBER}\s+{NUMBER}$", text)
    seed = saved["seeds"][0]
    assert 0 <= float(accuracy) <= 100
    assert float(accuracy) == pytest.approx(100 * seed["final_test_acc"], abs=0.005)
    assert seed["curve"][-1]["test_acc"] == seed["final_test_acc"]  # hook and summary: one model
    assert float(seconds) == pytest.approx(seed["train_seconds"], abs=0.05) and float(seconds) > 0
    assert float(rate) == pytest.approx(seed["images_per_second"], abs=0.5) and float(rate) > 0
    assert (reached == "not reached") == (seed["seconds_to_target"] is None)
    verdict, = find(r"^target \(mean test acc >= 93\.00% within mean <= 90 s\): (met|not met) ", text)
    assert (verdict == "met") == saved["target_met"]

    compute = saved["compute"]
    mflop, = find(rf"^training step: {NUMBER} MFLOP/image", text)
    achieved, = find(rf"^achieved: {NUMBER} GFLOP/s", text)
    bf16, fp32 = find(rf"^matmul peak 512x512: bf16 {NUMBER} GFLOP/s, fp32 {NUMBER} GFLOP/s", text)
    fraction, = find(rf"^fraction of {precision} peak: {NUMBER}%$", text)
    assert float(mflop) == pytest.approx(compute["flops_per_image"] / 1e6, abs=0.05)
    assert compute["achieved_flops_per_second"] == pytest.approx(
        compute["flops_per_image"] * seed["images_per_second"])
    assert float(achieved) == pytest.approx(compute["achieved_flops_per_second"] / 1e9, abs=0.05)
    assert float(bf16) > 0 and float(fp32) > 0
    assert 0 < float(fraction) < 100  # a training step cannot beat a large matmul


@pytest.mark.filterwarnings("ignore::cnntricks.nn.models.ImageSizeWarning")  # 28x28, on purpose
def test_training_flops_match_a_count_by_hand():
    """FlopCounterMode's count against 2·K·K·Cin per output value of each conv (and 2·in per
    output of each linear) in the forward pass; backward costs the same again for the weight
    gradients and again for the input gradients, except the first layer's (the image needs none)."""
    tta = load_script("time_to_accuracy")
    cfg = config.load(None, tta.SMOKE_OVERRIDES)
    model = create_model(cfg.model, 1, 10, (28, 28))  # Fashion-MNIST
    flops = []

    def count(module, inputs, output):
        per_output = (2 * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                      if isinstance(module, torch.nn.Conv2d) else 2 * module.in_features)
        flops.append(per_output * output[0].numel())  # one image

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(count)
    model(torch.zeros(1, 1, 28, 28))
    by_hand = 3 * sum(flops) - flops[0]

    images = Store(torch.zeros(600, 1, 28, 28, dtype=torch.uint8), torch.arange(600) % 10, list("0123456789"))
    splits = Splits(train=images, val=images, test=None, source="fashion-mnist")
    assert tta.training_flops_per_image(cfg, splits) == by_hand

def test_first_reaching_and_mean_std():
    tta = load_script("time_to_accuracy")
    curve = [{"epoch": 1, "train_seconds": 5.0, "test_acc": 0.90},
             {"epoch": 2, "train_seconds": 10.0, "test_acc": 0.93},
             {"epoch": 3, "train_seconds": 15.0, "test_acc": 0.95}]
    assert tta.first_reaching(curve, 0.93)["epoch"] == 2
    assert tta.first_reaching(curve, 0.96) is None
    assert tta.mean_std([1.0, 3.0]) == pytest.approx((2.0, 2 ** 0.5))
    assert tta.mean_std([4.0]) == (4.0, 0.0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bare_loop_computes_the_same_steps_as_fit(precision):
    """The overhead comparison is fair only if both sides do the same arithmetic: after the same
    steps from the same seed, the bare loop's weights and statistics equal fit's, bit for bit."""
    if precision == "bf16" and not cpu_has_bf16():
        pytest.skip("no bf16 on this CPU")
    overhead = load_script("overhead")
    cfg = config.load(None, ["data.source=synthetic", "data.subset=96", "optim.batch_size=32",
                             "model.width=4", "train.epochs=1", f"train.precision={precision}"])

    class KeepWeights:
        def on_epoch_end(self, trainer):
            state, run = trainer.state, trainer
            self.steps = state.step
            self.weights = {k: v.clone() for k, v in run.model.state_dict().items()}

    kept = KeepWeights()
    with tempfile.TemporaryDirectory() as scratch:
        train(cfg, Path(scratch) / "run", progress=False, report=False, callbacks=(kept,))
    assert kept.steps == 3
    splits = load_splits(cfg.data, cfg.train.seed)
    model, rate = overhead.train_bare(cfg, splits, torch.device("cpu"), precision, kept.steps)
    assert rate > 0
    for name, value in model.state_dict().items():
        assert torch.equal(value, kept.weights[name]), name


def test_overhead_smoke_prints_medians_and_their_ratio():
    text = run_script(str(BENCHMARKS / "overhead.py"), "--smoke", timeout=120)
    find(r"^device \S+, precision \w+, torch \S+, \d+ threads$", text)
    repeats = re.findall(rf"^  repeat \d+: cnntricks {NUMBER} img/s, bare {NUMBER} img/s$", text, re.M)
    assert len(repeats) == 2
    ours, bare = find(rf"^median\s+{NUMBER}\s+{NUMBER}\s+images/s$", text)
    assert float(ours) > 0 and float(bare) > 0
    ratio, verdict = find(rf"^ratio cnntricks/bare: {NUMBER} \(target >= 0\.95: (met|not met)\)$", text)
    assert float(ratio) == pytest.approx(float(ours) / float(bare), rel=2e-3)
    assert (verdict == "met") == (float(ratio) >= 0.95)


def test_augment_throughput_smoke_prints_rates_ratios_and_share():
    text = run_script(str(BENCHMARKS / "augment_throughput.py"), "--smoke", timeout=120)
    assert "usage:" in run_script(str(BENCHMARKS / "augment_throughput.py"), "--help", timeout=60)
    find(r"^device cpu, torch \S+, \d+ threads;", text)
    other = r"(\d+|not installed)"
    ratio = r"(\d+\.\d+|-)"
    for size, target in (("28x28x1", "5"), ("32x32x3", "5"), ("224x224x3", "1")):
        ours, album, kornia, vs_album, vs_kornia, verdict = find(
            rf"^{size}\s+\d+\s+(\d+)\s+{other}\s+{other}\s+{ratio}\s+{ratio}"
            rf"\s+>= {target}x: (met|not met|not measured)$", text)
        assert float(ours) > 0
        for rate, vs in ((album, vs_album), (kornia, vs_kornia)):
            assert (rate == "not installed") == (vs == "-")
            if vs != "-":  # printed rates are rounded to whole img/s; ~20 img/s at 224 in --smoke
                assert float(vs) == pytest.approx(float(ours) / float(rate), rel=0.06, abs=0.01)
        assert (verdict == "not measured") == (album == "not installed")
        if vs_album != "-":
            assert (verdict == "met") == (float(vs_album) >= float(target))
    augment, step, share, verdict = find(
        rf"^augmentation share .*: augment {NUMBER} ms, step {NUMBER} ms, share {NUMBER}% "
        r"\(target < 15%: (met|not met)\)$", text)
    assert float(augment) > 0 and float(step) > 0
    assert float(share) == pytest.approx(100 * float(augment) / (float(augment) + float(step)), abs=0.1)
    assert (verdict == "met") == (float(share) < 15)


def test_monitor_overhead_smoke_prints_costs_and_shares():
    script = str(BENCHMARKS / "monitor_overhead.py")
    assert "Exit status" in run_script(script, "--help", timeout=60, checkout=True)
    text = run_script(script, "--smoke", timeout=120, checkout=True)
    find(r"^device cpu, precision \w+, torch \S+, 1 threads$", text)
    step, = find(rf"^step without monitor: {NUMBER} ms$", text)
    sampled, cost = find(rf"^sampled step: {NUMBER} ms, monitor cost (-?\d+\.\d+) ms", text)
    calls, = find(rf"^unsampled step: {NUMBER} us in the monitor calls", text)
    assert float(step) > 0 and float(cost) == pytest.approx(float(sampled) - float(step), abs=0.02)
    assert float(calls) < 1000  # an unsampled step only checks the step number
    rows = {every: find(rf"^every:{every}\s+(\d+)\s+{NUMBER}\s+{NUMBER}\s+-?{NUMBER}%\s+(-?\d+\.\d+)%$", text)
            for every in (50, 10, 1)}
    assert [int(rows[every][0]) for every in (50, 10, 1)] == [1, 1, 4]  # 4 steps: step 1, or all
    share, verdict = find(r"^monitor share at every:50: (-?\d+\.\d+)% \(target <= 5%: (met|not met)\)$", text)
    assert share == rows[50][4] and (verdict == "met") == (float(share) <= 5)


def test_doctor_faults_smoke_prints_recall_precision_fixes_and_cost(tmp_path):
    script = str(BENCHMARKS / "doctor_faults.py")
    assert "Exit status" in run_script(script, "--help", timeout=60, checkout=True)
    out = tmp_path / "faults.json"
    text = run_script(script, "--smoke", "--out", str(out), timeout=180, checkout=True)
    saved = json.loads(out.read_text())
    runs = {run["case"]: run for run in saved["runs"] if run["role"] == "detect"}
    assert sorted(runs) == sorted(["lr_x100", "zero_init", "raw_inputs", "default", "mlp"])
    assert saved["torch"] == torch.__version__
    assert all(run["stats_records"] >= 10 for run in runs.values() if not run["error"])  # monitor: >= 10 samples
    total = len(saved["runs"])
    for name, run in runs.items():  # one progress line per run, with the findings it printed
        findings = ", ".join(f"{f['id']}:{f['severity']}@{f['step']}" for f in run["findings"]) or "none"
        find(rf"^\[\s*\d+/{total}\] {name}\s+seed 0\s+{NUMBER} s  findings: ({re.escape(findings)})(  |$)", text)
    # the planted faults showed, whatever the doctor made of them
    assert runs["zero_init"]["symptom_shown"] and runs["raw_inputs"]["symptom_shown"]

    def alarms(run):
        return {f["id"] for f in run["findings"] + run["finding_events"] if f["severity"] in ("warning", "error")}

    for name, row in saved["summary"]["faults"].items():
        runs_, found, recall, precision = find(rf"^{name}\s+(\d+)\s+(\d+)\s+{NUMBER}\s+(-|{NUMBER})\s", text)[:4]
        assert (int(runs_), int(found)) == (row["runs"], row["detected"]) == (1, row["detected"])
        assert float(recall) == pytest.approx(row["recall"], abs=0.005)
        expected = set(saved["cases"][name]["detected_by"])
        assert row["detected"] == bool(alarms(runs[name]) & expected)  # recall counted from the saved findings
        # precision recounted: runs where the fault's ids fired, right when all of them are the run's own
        fired = [r for r in runs.values() if alarms(r) & expected]
        right = [r for r in fired if alarms(r) & expected
                 <= set(saved["cases"][r["case"]]["detected_by"] + saved["cases"][r["case"]]["also_true"])]
        assert precision == ("-" if not fired else f"{len(right) / len(fired):.2f}")
    flagged, healthy, rate = find(rf"^false alarms: (\d+)/(\d+) healthy runs \({NUMBER}%\)", text)
    assert int(healthy) == 2 and int(flagged) == saved["summary"]["false_alarm_runs"]
    assert float(rate) == pytest.approx(50 * int(flagged), abs=0.05)

    # --smoke fixes lr_x100 once, against its twin (the same budget at the default LR)
    fix, = [r for r in saved["runs"] if r["role"] == "fix"]
    twin, = [r for r in saved["runs"] if r["role"] == "twin"]
    assert (fix["case"], twin["case"]) == ("lr_x100", saved["cases"]["lr_x100"]["twin"])
    fixed, fix_runs = find(r"^lr_x100\s+(\d+)/(\d+)\s", text)
    was_fixed = fix["test_acc"] is not None and fix["test_acc"] >= 0.9 * twin["test_acc"]
    assert (int(fixed), int(fix_runs)) == (int(was_fixed), 1) == (saved["fixes"]["fixed"], saved["fixes"]["runs"])
    remedies = Counter(f"{e['id']}:{e['what']}" for e in fix["remedies"])  # the remedy events of history.jsonl
    assert remedies == saved["fixes"]["faults"]["lr_x100"]["remedies"]
    assert fix["remedies"], "the fix run of LR x100 applied no remedy"

    cost, dense = find(r"^monitor \+ live doctor cost: ([+-]\d+\.\d)% of fit\(\) wall time at the defaults "
                       r".*?, ([+-]\d+\.\d)% at this benchmark's monitor", text)
    timed = saved["cost"]
    assert timed["order"] == ["off", "on", "default"]  # --smoke: each arm once
    assert float(cost) == pytest.approx(100 * timed["cost"], abs=0.05)
    assert float(dense) == pytest.approx(100 * timed["cost_dense"], abs=0.05)
    full_order = load_script("doctor_faults").OVERHEAD_ORDER
    for arm in ("default", "on", "off"):  # the median of each arm's runs: one in --smoke, four in the full run
        runs = [t for a, t in zip(timed["order"], timed["fit_seconds_in_order"]) if a == arm]
        assert len(runs) == 1 and timed[arm] == pytest.approx(statistics.median(runs))
        assert full_order.count(arm) == 4
    assert timed["default_monitor"] == "every:50" and timed["monitor"] != "every:50"

    verdicts = dict(re.findall(r"^  (.+?) {2,}(met|NOT MET|not measured) \(", text, re.M))
    detection = {"recall >= 0.95 per fault", "precision >= 0.95 per fault", "false alarms <= 5%"}
    assert set(verdicts) == detection | {f"foreign loop: {name}" for name in detection} | {
        "fixed >= 80% of faulty runs", "monitor + live doctor <= 5% of fit()"}

    # the foreign arm: the same cases by the plain loop, diagnosed from its Lightning-format metrics.csv alone;
    # lr_x100's divergence shows in a history and is judged, zero_init and raw_inputs (layer statistics) are not
    foreign = {run["case"]: run for run in saved["runs"] if run["role"] == "foreign"}
    assert sorted(foreign) == sorted(["lr_x100", "zero_init", "raw_inputs", "default", "mlp"]) and all(run["stats_records"] == 0 for run in foreign.values())
    assert list(saved["foreign"]["faults"]) == ["lr_x100"] and set(saved["foreign"]["unjudged"]) == {"zero_init",
                                                                                                    "raw_inputs"}
    # judged where the history shows the fault, healthy where the plain loop trained well (2 epochs may not)
    left_out = {name: int(runs.split("/")[0]) for name, runs in saved["foreign"]["left_out"].items()}
    assert saved["foreign"]["healthy_runs"] + left_out.get("default", 0) + left_out.get("mlp", 0) == 2
    assert foreign["lr_x100"]["symptom_shown"]  # the NaN in metrics.csv
    assert (verdicts["foreign loop: recall >= 0.95 per fault"] == "met") == (saved["foreign"]["faults"]["lr_x100"][
        "recall"] >= 0.95)
    find(r"^foreign loop: the plain PyTorch loop of plain_loop\.py, diagnosed from its metrics\.csv alone", text)
    find(r"^not judged \(their fault shows only in layer statistics, which a history lacks\), warning\+ ids: "
         r"zero_init: .+; raw_inputs: ", text)
    assert (verdicts["fixed >= 80% of faulty runs"] == "met") == (saved["fixes"]["fixed_share"] >= 0.8)
    assert (verdicts["false alarms <= 5%"] == "met") == (int(flagged) == 0)


def test_transfer_speed_smoke_prints_rates_ratio_and_linear_seconds():
    text = run_script(str(BENCHMARKS / "transfer_speed.py"), "--smoke", timeout=240, checkout=True)
    find(r"^cpu .+, torch \S+, 1 thread; 3 steps x batch 32 per run$", text)
    scratch, every, top = map(float, find(rf"^median scratch {NUMBER}, all {NUMBER}, top {NUMBER} images/s$", text))
    ratio, verdict = find(rf"^ratio fine-tune \(all\)/scratch: {NUMBER} \(target >= 0\.95: (met|not met)\)$", text)
    assert float(ratio) == pytest.approx(every / scratch, rel=2e-3) and (verdict == "met") == (float(ratio) >= 0.95)
    seconds, = find(rf"^linear: head fitted as a logistic regression .* in {NUMBER} s", text)
    assert float(seconds) < 60
    find(rf"^probe: every stage in {NUMBER} s \(exit 0\)$", text)


def test_doctor_generalization_smoke_prints_both_halves_and_resumes(tmp_path):
    script = str(BENCHMARKS / "doctor_generalization.py")
    out, figures = tmp_path / "grid", tmp_path / "figures.json"
    text = run_script(script, "--smoke", "--out", str(out), "--json", str(figures), timeout=240, checkout=True)
    saved = json.loads(figures.read_text())
    assert set(saved["halves"]) == {"calibration", "held-out"}  # digits: mlp calibrates, fastnet is held out
    assert [saved["halves"][half]["runs"] for half in ("calibration", "held-out")] == [1, 1]
    find(r"^figure\s+calibration\s+held-out\s+target$", text)
    find(r"^false alarms on healthy runs\s+(-|\d+%)\s+(-|\d+%)\s+<= 5%$", text)
    for key, entry in saved["apart"].items():  # one base run a half: every bootstrap draw is the observed halves
        assert entry["low"] == entry["high"] == pytest.approx(entry["difference"])
        find(rf"^  {key}\s+[+-]\d+\.\d\s+\[", text)
    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len({(r["key"], r["seed"]) for r in records}) >= 6  # 2 base runs and 2 changes of each, and any advice
    assert len(list(out.glob("base/*-s0/history.jsonl"))) == 2  # the base runs are kept for the doctor
    again = run_script(script, "--smoke", "--out", str(out), "--json", str(figures), timeout=120, checkout=True)
    assert "0 runs trained now" in again and json.loads(figures.read_text())["halves"] == saved["halves"]


def test_sampler_cost_smoke_prints_every_sampler_and_its_share():
    script = str(BENCHMARKS / "sampler_cost.py")
    assert "Exit status" in run_script(script, "--help", timeout=60, checkout=True)
    text = run_script(script, "--smoke", timeout=120, checkout=True)
    find(r"^labels: (13399) \(data.imbalance=100", text)
    for name in ("none", "oversample", "undersample", "class_balanced", "sqrt", "progressive", "two_stage"):
        find(rf"^{name}\s+(\d+)\s+{NUMBER} ms\s+{NUMBER} us\s+{NUMBER}%$", text)
    find(r"^worst sampler share of a step: (\d+\.\d+)% \(target < 2%: (met|not met)\)$", text)


def test_ensemble_gain_smoke_prints_members_ensembles_and_the_predict_cost(tmp_path):
    script = str(BENCHMARKS / "ensemble_gain.py")
    text = run_script(script, "--smoke", "--json", str(tmp_path / "gain.json"), timeout=300, checkout=True)
    for name in ("seed member seed-0", "seed member seed-1", "seed ensemble \\(mean\\)", "snapshot snap@cycle-01",
                 "snapshot snap@cycle-02", "snapshot ensemble \\(mean\\)", "snapshot weight average"):
        find(rf"^{name}\s+{NUMBER}%\s+{NUMBER}$", text)
    find(r"^seed ensemble over its best member: ([+-]\d+\.\d+) points", text)
    find(r"^snapshot ensemble over the mean member: ([+-]\d+\.\d+) points", text)
    ratio = float(find(r"^predict 50 PNG files: .* (\d+\.\d+)x \(target", text)[0])
    figures = json.loads((tmp_path / "gain.json").read_text())
    assert figures["predict_seconds"]["ratio"] == pytest.approx(ratio, abs=0.006) and figures["seeds"] == 2
    assert len(figures["seed_members"]) == 2 and len(figures["snapshot_members"]) == 2


def test_tune_workers_smoke_prints_both_searches_and_the_ratio():
    text = run_script(str(BENCHMARKS / "tune_workers.py"), "--smoke", timeout=300, checkout=True)
    one = find(rf"^1 worker:  {NUMBER} s \((\d+) trials\)$", text)
    two = find(rf"^2 workers: {NUMBER} s \((\d+) trials\)$", text)
    assert int(one[1]) == 2 and int(two[1]) >= 2
    ratio = float(find(rf"^2 workers / 1 worker: {NUMBER}x the time", text)[0])
    seconds_one, seconds_two = float(one[0]), float(two[0])
    # the seconds are printed to 0.01 s: the ratio of the printed figures may differ by that rounding
    rounding = 0.005 / seconds_one + 0.005 * seconds_two / seconds_one ** 2
    assert ratio == pytest.approx(seconds_two / seconds_one, abs=rounding + 0.005)


def test_ddp_parity_smoke_trains_one_and_two_processes_and_prints_the_difference():
    text = run_script(str(BENCHMARKS / "ddp_parity.py"), "--smoke", timeout=240, checkout=True)
    find(r"^cpu .+, torch \S+; recipe: data\.source=digits model\.name=mlp .*; 1 seed\(s\)$", text)
    accuracy = {}
    for processes in (1, 2):
        acc, steps = find(rf"^seed 0  {processes} process\(es\)  test acc {NUMBER}%  train {NUMBER} s  wall {NUMBER} s  "
                          rf"(\d+) steps$", text)[0::3]
        accuracy[processes] = float(acc)
        assert int(steps) == 20  # the same global batch: the same steps on 1 or 2 processes
    difference, verdict = find(rf"^difference 2 - 1: ([+-]\d+\.\d+) points \(target \|difference\| <= 0\.2: "
                               rf"(met|NOT MET)\)", text)
    assert float(difference) == pytest.approx(accuracy[2] - accuracy[1], abs=0.011)
    assert (verdict == "met") == (abs(float(difference)) <= 0.2)


def test_data_at_scale_smoke_builds_the_disk_store_trains_from_it_and_prints_the_targets():
    text = run_script(str(BENCHMARKS / "data_at_scale.py"), "--smoke", "--cold", timeout=300, checkout=True)
    find(rf"^--cold: {NUMBER} GB of cache files dropped from the page cache$", text)
    assert len(re.findall("^--cold: ", text, re.M)) == 2  # before each training run
    find(r"^cpu .+; 300 JPEGs at 64x48, cached at 3x32x32 with 2 workers$", text)
    rate, count, seconds = find(rf"^cache build: ([\d,]+) images/s \((300) in {NUMBER} s, 2 workers\); 300 images at "
                                rf"3x32x32 in .+images\.u8", text)
    assert float(rate.replace(",", "")) == pytest.approx(300 / float(seconds), rel=0.05, abs=1)
    steps, train, _, wait, share, _ = find(rf"^train data\.storage=disk: (\d+) steps in {NUMBER} s \({NUMBER} images/s\), "
                                           rf"waited for data {NUMBER} s \({NUMBER}%\); peak memory {NUMBER} GB$", text)
    assert int(steps) >= 1 and float(wait) <= float(train)
    find(rf"^train data\.storage=memory: \d+ steps in {NUMBER} s \({NUMBER} images/s\); peak memory {NUMBER} GB$", text)
    find(r"^targets: waiting for data .+% of training \(< 5%: (met|NOT MET)\); peak memory from disk .+ GB \(< 2 GB: "
         r"(met|NOT MET)\), from memory .+ GB$", text)


def test_default_fit_smoke_trains_the_plan_and_a_sweep_point_and_prints_the_gap():
    text = run_script(str(BENCHMARKS / "default_fit.py"), "--smoke", timeout=300, checkout=True)
    find(r"^cpu .+; data sets digits; 1 seed\(s\)$", text)
    per_epoch, epochs, steps = find(r"^digits: (\d+) steps an epoch; the default plans (\d+) epochs \(([\d,]+) steps\)$",
                                    text)
    assert int(epochs) * int(per_epoch) >= 200 > (int(epochs) - 1) * int(per_epoch)  # train.min_steps=200 in the smoke
    default, _, best, _, gap, verdict = find(
        rf"^digits: default {NUMBER} ± {NUMBER}% \(\d+ steps\); sweep's best \(epochs=12, by validation\) {NUMBER} ± "
        rf"{NUMBER}%: gap ([+-]\d+\.\d+) points \(<= 2: (met|NOT MET)\)$", text)[:6]
    assert float(gap) == pytest.approx(float(best) - float(default), abs=0.011)


def test_frontier_smoke_trains_the_budget_recipe_the_expert_loop_and_the_seed_recipe_and_draws_the_figure(tmp_path):
    text = run_script(str(BENCHMARKS / "frontier.py"), "--smoke", "--out", str(tmp_path), timeout=600, checkout=True)
    find(r"^cpu .+; budgets 4, 8 s; 1 seed\(s\)$", text)
    for budget in ("4", "8"):
        find(rf"^  budget-1min {budget} s seed 0: test {NUMBER}%, {NUMBER} s of training, \d+ steps$", text)
        find(rf"^  expert {budget} s seed 0: test {NUMBER}%, {NUMBER} s of training, \d+ steps$", text)
        ours, _, expert, _, margin = find(
            rf"^ +{budget}s  budget-1min +{NUMBER} ± {NUMBER}% +{NUMBER} ± {NUMBER}% +([+-]\d+\.\d+) +1  ", text)
        assert float(margin) == pytest.approx(float(ours) - float(expert), abs=0.011)
    find(rf"^configs/seed\.yaml: {NUMBER} ± {NUMBER}% in \d+ s of training$", text)
    figure = Path(find(r"^figure: (.+frontier\.png)$", text)[0])
    assert figure == tmp_path / "frontier.png" and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 5  # kept: a second call would train none


def test_ablation_smoke_trains_the_recipe_without_each_of_its_tricks_and_draws_what_each_adds(tmp_path):
    text = run_script(str(BENCHMARKS / "ablation.py"), "--smoke", "--out", str(tmp_path), timeout=600, checkout=True)
    find(r"^cpu .+; budgets 4 s; 1 seed\(s\)$", text)
    recipe = float(find(rf"^  nothing \(the recipe\) +{NUMBER} ± {NUMBER} +\d+ +1$", text)[0])
    for removed in ("augmentation \\(flip\\)", "label smoothing 0\\.1", "warm-up", "cosine decay \\(constant LR\\)",
                    "weight decay 0\\.0005", "standardize \\(raw pixels\\)", "flip TTA \\(scored without\\)"):
        test, _, change, _ = find(rf"^  {removed} +{NUMBER} ± {NUMBER} +([+-]\d+\.\d+) ± {NUMBER} +\d+ +1$", text)
        assert float(change) == pytest.approx(float(test) - recipe, abs=0.011)
    runs = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(runs) == 7 + ("bf16 + channels_last" in text)  # TTA is scored on the recipe's own run
    figure = Path(find(r"^figure: (.+ablation\.png)$", text)[0])
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_script(str(BENCHMARKS / "ablation.py"), "--smoke", "--out", str(tmp_path), timeout=600, checkout=True)
    assert "seed 0 without" not in again and len((tmp_path / "runs.jsonl").read_text().splitlines()) == len(runs)
