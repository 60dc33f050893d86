"""The Monitor against planted faults and hand-computed references (seed §5: dead ReLUs, saturation)."""
import json

import pytest
import torch
from torch import nn

from cnntricks.config import ModelConfig
from cnntricks.monitor import Monitor, histogram_edges, read_stats
from cnntricks.nn.models import create_model

DEAD = -1e4  # a bias no input of N(0, 1) can overcome: the unit's input is never > 0


def run_step(monitor, model, x, step, epoch=1, optimizer=None, loss_scale=1.0):
    """One training step of the loop, calling the monitor where the trainer does."""
    monitor.before_forward(step)
    loss = model(x).float().square().mean() * loss_scale
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        monitor.after_backward(grad_scale=loss_scale)
        optimizer.step()
    monitor.after_step(step, epoch)


def last_record(monitor):
    return json.loads(monitor.file.pending[-1])


def conv_relu(channels=8, dead_channel=None, activation=None):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, channels, 3, padding=1)
    if dead_channel is not None:
        with torch.no_grad():
            conv.bias[dead_channel] = DEAD
    return nn.Sequential(conv, activation or nn.ReLU())


def test_a_planted_dead_channel_is_counted_exactly(tmp_path):
    model = conv_relu(8, dead_channel=3)
    monitor = Monitor(model, tmp_path, every=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(1, 4):
        run_step(monitor, model, torch.randn(16, 3, 8, 8), step, optimizer=optimizer)
        layer = last_record(monitor)["layers"]["1"]
        assert (layer["dead"], layer["units"]) == (1 / 8, 8)
        assert layer["type"] == "ReLU" and "saturated" not in layer


def test_a_healthy_layer_has_no_dead_units(tmp_path):
    model = conv_relu(8)
    monitor = Monitor(model, tmp_path, every=1)
    run_step(monitor, model, torch.randn(16, 3, 8, 8), 1)
    assert last_record(monitor)["layers"]["1"]["dead"] == 0.0


def test_dead_is_read_from_the_input_for_a_learned_negative_slope(tmp_path):
    # PReLU with slope -1: the dead channel's output is large and positive, its input never > 0.
    model = conv_relu(4, dead_channel=0, activation=nn.PReLU(4, init=-1.0))
    monitor = Monitor(model, tmp_path, every=1)
    run_step(monitor, model, torch.randn(16, 3, 8, 8), 1)
    assert last_record(monitor)["layers"]["1"]["dead"] == 1 / 4


def test_a_unit_active_in_one_of_the_last_window_batches_is_not_dead(tmp_path):
    model = nn.Sequential(nn.Identity(), nn.ReLU())  # the ReLU's input is the batch itself
    monitor = Monitor(model, tmp_path, every=1, window=3)
    only_first = torch.tensor([[1.0, 1.0, -1.0]])  # unit 0 active once, unit 2 never
    never = torch.tensor([[-1.0, 1.0, -1.0]])
    dead = []
    for step, x in enumerate([only_first, never, never, never, never], start=1):
        run_step(monitor, model, x, step)
        dead.append(last_record(monitor)["layers"]["1"]["dead"])
    # unit 2 is dead from the first batch (the window fills from what was seen); unit 0 from the
    # fourth, when its one active batch leaves the window of 3
    assert dead == [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3]


@pytest.mark.parametrize("activation", [nn.Tanh, nn.Sigmoid])
def test_saturation_is_near_one_with_huge_weights_and_near_zero_with_tiny(tmp_path, activation):
    shares = []
    for scale in (1000.0, 1e-3):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(32, 64), activation())
        with torch.no_grad():
            model[0].weight.mul_(scale)
            model[0].bias.zero_()
        monitor = Monitor(model, tmp_path, every=1)
        run_step(monitor, model, torch.randn(64, 32), 1)
        layer = last_record(monitor)["layers"]["1"]
        shares.append(layer["saturated"])
        assert "dead" not in layer
    assert shares[0] > 0.95 and shares[1] == 0.0


def test_gradient_norms_equal_torch_s_and_are_unscaled(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(8, 3, 8, 8)
    model(x).square().mean().backward()
    expected = {name: p.grad.norm().item() for name, p in model.named_parameters()}
    total = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item()
    model.zero_grad()
    monitor = Monitor(model, tmp_path, every=1)
    # a GradScaler's factor of 1024 on the loss, divided out again
    run_step(monitor, model, x, 1, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), loss_scale=1024.0)
    record = last_record(monitor)
    assert set(record["params"]) == {"0.weight", "3.weight"}  # ndim > 1 only
    for name, entry in record["params"].items():
        assert entry["grad_norm"] == pytest.approx(expected[name], rel=1e-5)
    assert record["grad_norm_total"] == pytest.approx(total, rel=1e-5)  # biases included


def test_update_ratio_is_the_step_over_the_weight(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU())
    before = model[0].weight.detach().clone()
    monitor = Monitor(model, tmp_path, every=1)
    run_step(monitor, model, torch.randn(4, 10), 1, optimizer=torch.optim.SGD(model.parameters(), lr=0.5))
    after = model[0].weight.detach()
    entry = last_record(monitor)["params"]["0.weight"]
    assert not torch.equal(before, after)
    assert entry["update_ratio"] == pytest.approx(((after - before).norm() / before.norm()).item(), rel=1e-5)
    assert entry["weight_norm"] == pytest.approx(after.norm().item(), rel=1e-5)


def test_hooks_live_only_on_sampled_steps_and_unsampled_steps_write_nothing(tmp_path):
    model = conv_relu(4)
    monitor = Monitor(model, tmp_path, every=5)
    sampled = []
    for step in range(1, 12):
        armed = monitor.before_forward(step)
        assert bool(model[1]._forward_hooks) == armed
        model(torch.randn(2, 3, 8, 8))
        monitor.after_backward()
        monitor.after_step(step, 1)
        assert not any(module._forward_hooks for module in model.modules())
        if armed:
            sampled.append(step)
    assert sampled == [1, 5, 10]
    assert [json.loads(line)["step"] for line in monitor.file.pending] == [1, 5, 10]


def test_flush_truncate_and_read_stats_round_trip(tmp_path):
    model = conv_relu(4)
    monitor = Monitor(model, tmp_path, every=1)
    for step in range(1, 4):
        run_step(monitor, model, torch.randn(2, 3, 8, 8), step, epoch=1 + step // 3)
    assert monitor.flush() == 3 and monitor.flush() == 3
    records = read_stats(tmp_path)  # the run directory or the file itself
    assert records == read_stats(tmp_path / "stats.jsonl") == [json.loads(line) for line in
                                                                (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [(r["step"], r["epoch"]) for r in records] == [(1, 1), (2, 1), (3, 2)]
    layer = records[0]["layers"]["1"]
    assert len(histogram_edges(layer)) == len(layer["hist"]) + 1
    assert histogram_edges(layer)[0] == layer["min"] and histogram_edges(layer)[-1] == pytest.approx(layer["max"])

    monitor.truncate(2)  # a resume from the checkpoint written after step 2
    assert read_stats(tmp_path) == records[:2] and monitor.flush() == 2
    with (tmp_path / "stats.jsonl").open("a") as f:
        f.write('{"step": 3, "epoch": 2, "lay')  # killed while writing
    assert read_stats(tmp_path) == records[:2]
    with (tmp_path / "stats.jsonl").open("a") as f:
        f.write('\n{"step": 4}\n')
    skipped = []  # damage before the last line is skipped, and said
    assert read_stats(tmp_path, skipped) == [*records[:2], {"step": 4}]
    assert skipped and skipped[0].startswith("stats.jsonl, line 3")
    with pytest.raises(FileNotFoundError, match="train.monitor"):
        read_stats(tmp_path / "elsewhere")


def test_state_dict_round_trip_continues_the_dead_window(tmp_path):
    model = nn.Sequential(nn.Identity(), nn.ReLU())
    once = torch.tensor([[1.0, -1.0]])
    never = torch.tensor([[-1.0, -1.0]])
    first = Monitor(model, tmp_path / "a.jsonl", every=1, window=3)
    for step, x in enumerate([once, never], start=1):
        run_step(first, model, x, step)
    state = json.loads(json.dumps(first.state_dict()))  # saved in the checkpoint's state.json
    resumed, fresh = (Monitor(model, tmp_path / "b.jsonl", every=1, window=3) for _ in range(2))
    resumed.load_state_dict(state)
    fresh.load_state_dict({})  # a checkpoint written without the monitor's state
    for monitor in (first, resumed, fresh):
        run_step(monitor, model, never, 3)
    dead = [last_record(m)["layers"]["1"]["dead"] for m in (first, resumed, fresh)]
    assert dead == [0.5, 0.5, 1.0]  # the fresh monitor never saw unit 0 active


def test_settings(tmp_path):
    # train.monitor is parsed once, with the rest of the config (train/resolve.py)
    from cnntricks.config import ConfigError
    from cnntricks.train.resolve import monitor_every
    assert monitor_every("off") is None and monitor_every("every:7") == 7
    monitor = Monitor(conv_relu(4), tmp_path, every=7)
    assert monitor.every == 7 and monitor.path == tmp_path / "stats.jsonl"
    for bad in ("every:0", "sometimes", "every:x"):
        with pytest.raises(ConfigError, match="train.monitor"):
            monitor_every(bad)


def test_a_module_called_twice_has_one_entry_per_call(tmp_path):
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 4), relu, nn.Linear(4, 4), relu)
    monitor = Monitor(model, tmp_path, every=1)
    run_step(monitor, model, torch.randn(3, 4), 1)
    assert set(last_record(monitor)["layers"]) == {"1", "1#2"}


def test_a_diverged_batch_writes_nulls(tmp_path):
    model = conv_relu(4)
    monitor = Monitor(model, tmp_path, every=1)
    run_step(monitor, model, torch.full((2, 3, 8, 8), float("nan")), 1,
             optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    monitor.flush()
    record = read_stats(tmp_path)[0]
    assert record["layers"]["1"]["mean"] is None and record["grad_norm_total"] is None


@pytest.mark.filterwarnings("ignore::cnntricks.nn.models.ImageSizeWarning")  # 28x28, on purpose
def test_default_model_channels_last_under_bf16_autocast(tmp_path):
    torch.manual_seed(0)
    model = create_model(ModelConfig(width=4), 1, 10, (28, 28)).to(memory_format=torch.channels_last)
    with torch.no_grad():
        model.stages[0][2].bias[1] = DEAD  # the stem's norm shift: its ReLU's channel 1 dies
    monitor = Monitor(model, tmp_path, every=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(32, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    monitor.before_forward(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x), torch.randint(0, 10, (32,)))
    loss.backward()
    monitor.after_backward()
    optimizer.step()
    monitor.after_step(1, 1)
    record = last_record(monitor)
    layers = record["layers"]
    assert list(layers) == ["stages.0.3", "stages.1.2", "stages.1.6", "stages.2.2", "stages.2.6"]
    assert (layers["stages.0.3"]["dead"], layers["stages.0.3"]["units"]) == (1 / 4, 4)
    for layer in layers.values():
        assert layer["std"] > 0 and layer["min"] == 0.0 and sum(layer["hist"]) > 0
    assert all(entry["update_ratio"] > 0 for entry in record["params"].values())
