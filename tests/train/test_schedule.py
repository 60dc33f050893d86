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
