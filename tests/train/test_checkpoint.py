import os

import torch

from cnntricks.rundir import latest_checkpoint
from cnntricks.train import checkpoint as ckpt


def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_restores_model_optimizer_and_rng(tmp_path):
    model, optimizer = make()
    generator = torch.Generator().manual_seed(3)
    torch.rand(5, generator=generator)
    folder = ckpt.save_checkpoint(tmp_path, 1, model, optimizer,
                                  {"generator": generator.get_state()}, {"note": "x"})
    assert latest_checkpoint(tmp_path) == folder
    expected = torch.rand(5, generator=generator)

    other, other_optimizer = make()
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    state, rng = ckpt.load_checkpoint(folder, other, other_optimizer)
    assert state["note"] == "x" and state["epoch"] == 1
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    buffers = [other_optimizer.state[p]["momentum_buffer"] for p in other.parameters()]
    originals = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(buffers, originals))
    restored = torch.Generator()
    restored.set_state(rng["generator"])
    assert torch.equal(torch.rand(5, generator=restored), expected)


def test_keeps_only_the_newest_and_ignores_torn_writes(tmp_path):
    model, optimizer = make()
    for epoch in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, epoch, model, optimizer, {}, {})
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch-*"))
    assert names == ["epoch-0002", "epoch-0003"]
    # A kill in the middle of a save leaves a temporary folder and an unchanged pointer.
    (tmp_path / "checkpoints" / ".tmp-epoch-0004-99").mkdir()
    assert latest_checkpoint(tmp_path).name == "epoch-0003"
    # A lost pointer falls back to the newest complete folder.
    os.remove(tmp_path / "checkpoints" / "latest")
    assert latest_checkpoint(tmp_path).name == "epoch-0003"
    ckpt.save_checkpoint(tmp_path, 4, model, optimizer, {}, {})
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_files_are_safetensors_and_json_only(tmp_path):
    model, optimizer = make()
    folder = ckpt.save_checkpoint(tmp_path, 1, model, optimizer, {}, {})
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "state.json", "state.safetensors"]
    for name in ("model.safetensors", "state.safetensors"):
        raw = (folder / name).read_bytes()
        header = int.from_bytes(raw[:8], "little")
        assert raw[8:9] == b"{" and header < len(raw)  # safetensors: a JSON header, no pickle
