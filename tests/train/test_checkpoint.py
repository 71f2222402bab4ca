import pytest
import torch

from vlfuse.errors import CheckpointError
from vlfuse.train import checkpoint as ckpt
from vlfuse.train.trainer import build_optimizer, build_scheduler


def _parts(cfg):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = build_optimizer(model, cfg.train)
    sched = build_scheduler(opt, cfg.train, total_steps=10)
    return model, opt, sched


def test_training_state_round_trip_restores_everything(tmp_path, tiny_config):
    from vlfuse.task import validate_config

    cfg = validate_config(tiny_config)
    model, opt, sched = _parts(cfg)
    for _ in range(3):
        model(torch.randn(5, 4)).sum().backward()
        opt.step()
        sched.step()
    rng_before = torch.get_rng_state()
    ckpt.save_training_state(
        tmp_path / "s.safetensors",
        model=model,
        optimizer=opt,
        scheduler=sched,
        trainer_state={"epoch": 3, "history": [{"a": 1.5}]},
    )
    torch.randn(100)  # move the RNG on
    model2, opt2, sched2 = _parts(cfg)
    state = ckpt.load_training_state(tmp_path / "s.safetensors", model=model2, optimizer=opt2, scheduler=sched2)
    assert state == {"epoch": 3, "history": [{"a": 1.5}]}
    assert torch.equal(torch.get_rng_state(), rng_before)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert sched2.last_epoch == 3
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for pid in s1["state"]:
        for key, value in s1["state"][pid].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(s2["state"][pid][key]))


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    good = {"w": torch.ones(3)}
    ckpt.atomic_save_tensors(good, path)

    def exploding_save(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_save_tensors({"w": torch.zeros(3)}, path)
    tensors, _ = ckpt.read_checkpoint(path)
    assert torch.equal(tensors["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left behind


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "w.safetensors"
    ckpt.atomic_save_tensors({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="unreadable or incomplete"):
        ckpt.read_checkpoint(path)


def test_mismatched_weights_name_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    ckpt.save_model_weights(torch.nn.Linear(3, 3), path)
    with pytest.raises(CheckpointError, match="w.safetensors' do not match"):
        ckpt.load_model_weights(torch.nn.Linear(4, 3), path)
