import pytest

from cnntricks.config import ScheduleConfig
from cnntricks.train.schedule import Schedule


def lrs(name, total=100, per_epoch=10, **kw):
    schedule = Schedule(ScheduleConfig(name=name, **kw), 0.1, total, per_epoch)
    return [schedule.lr(s) for s in range(total)]


def test_onecycle_rises_to_the_peak_then_falls_to_zero():
    values = lrs("onecycle", peak_fraction=0.25)
    assert max(values) == pytest.approx(0.1)
    assert values.index(max(values)) == 24
    assert values[0] < 0.01 and values[-1] < 0.002
    assert all(a <= b for a, b in zip(values[:25], values[1:25]))
    assert all(a >= b for a, b in zip(values[24:], values[25:]))


def test_cosine_with_warmup():
    values = lrs("cosine", warmup_epochs=1)
    assert values[0] == pytest.approx(0.01)
    assert values[9] == pytest.approx(0.1)
    assert values[-1] < 0.001


def test_step_divides_every_step_epochs():
    values = lrs("step", step_epochs=3, step_divide=10)
    assert values[29] == pytest.approx(0.1) and values[30] == pytest.approx(0.01)


@pytest.mark.parametrize("divide", [2.0, 5.0])
def test_plateau_divides_by_2_or_5_when_validation_stops_improving(divide):
    schedule = Schedule(ScheduleConfig(name="plateau", plateau_divide=divide, plateau_patience=1),
                        0.1, 100, 10)
    assert schedule.on_epoch_end(0.50) is None
    assert schedule.on_epoch_end(0.60) is None
    assert schedule.on_epoch_end(0.60) is None       # 1 bad epoch: within patience
    message = schedule.on_epoch_end(0.59)            # 2 bad epochs: divide
    assert "seed §4" in message
    assert schedule.lr(50) == pytest.approx(0.1 / divide)
    state = schedule.state_dict()
    again = Schedule(ScheduleConfig(name="plateau", plateau_divide=divide), 0.1, 100, 10)
    again.load_state_dict(state)
    assert again.lr(0) == schedule.lr(0)


def test_plateau_never_goes_below_min_lr():
    schedule = Schedule(ScheduleConfig(name="plateau", plateau_patience=0, min_lr=0.02), 0.1, 10, 1)
    for _ in range(10):
        schedule.on_epoch_end(0.1)
    assert schedule.lr(0) == pytest.approx(0.02)


STEPS = [0, 1, 4, 5, 6, 9, 10, 29, 30, 31, 59, 60, 89, 90, 119, 120]
CUSTOM = {"warmup_epochs": 0.5, "step_epochs": 3, "final_fraction": 0.1, "peak_fraction": 0.3}
# Schedule(cfg, 0.1, total_steps=120, steps_per_epoch=10).lr(step) at STEPS, recorded from the
# if-chain `lr_factor` before the schedules became a registry: the refactor moved no bit.
RECORDED = {
    ("onecycle", "default"): [
        0.0033333333333333335, 0.006666666666666667, 0.016666666666666666, 0.02,
        0.023333333333333334, 0.03333333333333333, 0.03666666666666667, 0.1,
        0.1, 0.09888888888888889, 0.06777777777777778, 0.06666666666666668,
        0.034444444444444444, 0.03333333333333334, 0.0011111111111111072, 0.0,
    ],
    ("onecycle", "custom"): [
        0.0027777777777777783, 0.005555555555555557, 0.01388888888888889, 0.016666666666666666,
        0.019444444444444445, 0.02777777777777778, 0.030555555555555555, 0.08333333333333334,
        0.08611111111111114, 0.0888888888888889, 0.07535714285714286, 0.07428571428571429,
        0.043214285714285705, 0.04214285714285714, 0.011071428571428565, 0.009999999999999998,
    ],
    ("cosine", "default"): [
        0.010000000000000002, 0.020000000000000004, 0.05, 0.06,
        0.06999999999999999, 0.1, 0.1, 0.09281745151257946,
        0.09206267664155907, 0.0912735948481387, 0.0585261096316312, 0.05711574191366427,
        0.018349377309556488, 0.01725696330273575, 2.0390358590538505e-05, 0.0,
    ],
    ("cosine", "custom"): [
        0.020000000000000004, 0.04000000000000001, 0.1, 0.1,
        0.09998320965678598, 0.09973160502544916, 0.09958086757163488, 0.09066969544603863,
        0.0899070080816989, 0.08911827179974732, 0.05929606328497346, 0.058070908601410204,
        0.025194887551211166, 0.024285108555160577, 0.01001679034321402, 0.010000000000000002,
    ],
    ("step", "default"): [
        0.010000000000000002, 0.020000000000000004, 0.05, 0.06,
        0.06999999999999999, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.010000000000000002, 0.010000000000000002,
    ],
    ("step", "custom"): [
        0.020000000000000004, 0.04000000000000001, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
        0.010000000000000002, 0.010000000000000002, 0.010000000000000002, 0.001,
        0.001, 0.0001, 0.0001, 1e-05,
    ],
    ("constant", "default"): [
        0.010000000000000002, 0.020000000000000004, 0.05, 0.06,
        0.06999999999999999, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
    ],
    ("constant", "custom"): [
        0.020000000000000004, 0.04000000000000001, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
    ],
    ("plateau", "default"): [
        0.010000000000000002, 0.020000000000000004, 0.05, 0.06,
        0.06999999999999999, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
    ],
    ("plateau", "custom"): [
        0.020000000000000004, 0.04000000000000001, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
        0.1, 0.1, 0.1, 0.1,
    ],
}


@pytest.mark.parametrize("name, options", sorted(RECORDED))
def test_lr_is_the_recorded_one_at_every_step(name, options):
    schedule = Schedule(ScheduleConfig(name=name, **(CUSTOM if options == "custom" else {})), 0.1, 120, 10)
    assert [schedule.lr(step) for step in STEPS] == RECORDED[name, options]


def test_an_unknown_schedule_fails_when_the_schedule_is_made():
    with pytest.raises(ValueError, match="did you mean 'cosine'"):
        Schedule(ScheduleConfig(name="cosin"), 0.1, 100, 10)


def test_a_staged_schedule_starts_each_stage_again_at_its_share_without_warm_up():
    from cnntricks.train.schedule import StagedSchedule
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1, final_fraction=0.0)
    staged = StagedSchedule(cfg, 0.1, [(40, 10, 1.0), (20, 5, 0.1)])
    first = Schedule(cfg, 0.1, 40, 10)
    assert [staged.lr(s) for s in range(40)] == [first.lr(s) for s in range(40)]
    assert staged.lr(40) == pytest.approx(0.01)  # the second stage: its peak at once, a tenth
    assert staged.lr(50) == pytest.approx(0.005) and staged.lr(59) < 1e-4
    assert staged.total_steps == 60


def test_snapshot_is_huang_et_als_restarted_cosine():
    """Huang et al. 2017, eq. 2: α(t) = α0/2 (cos(π mod(t, ⌈T/M⌉) / ⌈T/M⌉) + 1), M cycles of T steps."""
    import math
    assert ScheduleConfig().cycles == 5  # the paper's M for CIFAR (5 or 6)
    values = lrs("snapshot", total=100, per_epoch=10, cycles=5, warmup_epochs=0)
    expected = [0.1 / 2 * (math.cos(math.pi * (t % 20) / 20) + 1) for t in range(100)]
    assert values == pytest.approx(expected)


def test_snapshot_cycles_end_on_whole_epochs_after_the_warm_up():
    from cnntricks.train.schedule import cycle_ends
    assert cycle_ends(12, 5) == [2, 5, 7, 10, 12] and cycle_ends(30, 5) == [6, 12, 18, 24, 30]
    values = lrs("snapshot", total=120, per_epoch=10, cycles=5, warmup_epochs=1)
    assert values[0] == pytest.approx(0.01) and values[10] == pytest.approx(0.1)  # warm-up, then the peak
    assert values[19] < 0.003 and values[20] == pytest.approx(0.1)  # cycle 1 (2 epochs) ends, cycle 2 restarts
    assert values[49] < 0.001 and values[50] == pytest.approx(0.1)  # cycle 2: 3 epochs
    assert values[119] < 0.001


def test_snapshot_configs_that_cannot_work_are_refused():
    from cnntricks.config import ConfigError, load
    from cnntricks.train.resolve import resolve
    with pytest.raises(ConfigError, match="schedule.cycles=5 is more than train.epochs=3"):
        resolve(load(None, ["schedule.name=snapshot", "train.epochs=3"]))
    with pytest.raises(ConfigError, match="fills the first snapshot cycle"):
        resolve(load(None, ["schedule.name=snapshot", "train.epochs=5", "schedule.warmup_epochs=1"]))
    with pytest.raises(ConfigError, match="does not combine with imbalance.two_stage"):
        resolve(load(None, ["schedule.name=snapshot", "data.source=synthetic", "imbalance.two_stage=true"]))
    with pytest.raises(ConfigError, match="schedule.cycles"):
        load(None, ["schedule.cycles=1"])
