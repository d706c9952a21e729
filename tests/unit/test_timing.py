"""Measured time per part and per layer (models.timing): shares that add up, a model left untouched, the
training conditions (channels_last, bf16), and one-line errors for a bad device or precision."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import models
from models.errors import ConfigError
from models.timing import Timed, consistency_problems, measure, resolve_device, resolve_precision


def _hooks(net: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in net.modules())


@pytest.mark.parametrize("training", [True, False])
def test_shares_add_up_and_the_model_is_unchanged(training: bool) -> None:
    net = models.build("resnet20", num_classes=10).train(training)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    t = measure(net, 16, batch_size=4, repeats=3)
    assert [p.name for p in t.parts] == ["stem", "stage1", "stage2", "stage3", "head"]
    shares = [t.share(p.name) for p in t.parts]
    assert all(s > 0 for s in shares) and sum(shares) == pytest.approx(1.0)
    assert all(p.fwd_ms > 0 and p.fwdbwd_ms > 0 for p in [t.total, *t.parts, *t.layers])
    assert {layer.part for layer in t.layers} == {"stem", "stage1", "stage2", "stage3", "head"}
    assert len(t.layers) == len([m for n, m in net.named_modules() if n and not list(m.children())])
    assert net.training is training and _hooks(net) == 0  # same flag, no hook left
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics too
    summary = t.summary()
    assert summary["time/batch_size"] == 4 and sum(summary[f"time_share/{p.name}"] for p in t.parts) == \
        pytest.approx(1.0)
    assert t.rounds >= 3 and all(p.fwdbwd_iqr_ms >= 0 for p in t.parts)  # the spread is known


def test_channels_last_and_bf16() -> None:
    net = models.build("resnet20", num_classes=10)
    t = measure(net, 16, batch_size=2, precision="bf16-mixed", channels_last=True, repeats=1, layers=False)
    assert t.channels_last and t.precision == "bf16-mixed" and not t.layers and t.total.fwdbwd_ms > 0
    assert next(net.parameters()).dtype == torch.float32 and net.stem.conv.weight.is_contiguous()  # untouched


def test_bad_device_and_precision_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"^device='mps' is not supported: use device=cpu or device=cuda$"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match=r"^device='tpu' is not a device: use device=cpu or device=cuda$"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^device=cuda but this machine has no CUDA GPU: use device=cpu$"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"^precision='fp8' is not valid: choose one of 32, bf16, 16"):
        resolve_precision("fp8", torch.device("cpu"))
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16


def test_record_keys_are_per_image() -> None:
    """time/<part>/*_ms in a record are per IMAGE (Timed holds the whole batch), as the README's table says."""
    net = models.build("resnet20", num_classes=10)
    t = measure(net, 8, batch_size=4, repeats=3, layers=False)
    s = t.summary()
    assert s["time/total/fwdbwd_ms"] == pytest.approx(t.total.fwdbwd_ms / 4)
    assert s["time/stage1/fwd_ms"] == pytest.approx(next(p for p in t.parts if p.name == "stage1").fwd_ms / 4)
    assert s["time/rounds"] == t.rounds >= 3 and isinstance(s["time/reliable"], bool)


def test_consistency_checks_name_what_contradicts_itself() -> None:
    good = [Timed("stem", "stem", "Stem", 1.0, 3.0, 0.05, 0.1), Timed("head", "head", "Head", 1.0, 3.0, 0.05, 0.1)]
    assert consistency_problems(Timed("total", "model", "Net", 2.0, 6.0, 0.1, 0.2), good) == []
    slow_fwd = [Timed("stage1", "stage1", "Sequential", 293.0, 42.0, 1.0, 1.0)]  # seen on a busy machine
    assert consistency_problems(Timed("total", "model", "Net", 50, 42.0, 1, 1), slow_fwd) == [
        "stage1: forward 293 ms > forward+backward 42 ms"]
    apart = [Timed("stem", "stem", "Stem", 100, 225.0, 1, 1), Timed("head", "head", "Head", 100, 225.0, 1, 1)]
    assert consistency_problems(Timed("total", "model", "Net", 500, 1488.0, 10, 10), apart) == [
        "the parts add up to 30% of the whole network's time"]
    noisy = Timed("total", "model", "Net", 2.0, 6.0, 0.1, 3.0)
    assert consistency_problems(noisy, good) == ["the whole network's time varied by 50% (IQR/median)"]
    assert consistency_problems(Timed("total", "model", "Net", 2.0, 6.0), good) == [
        "spread unknown (fewer than 3 rounds)"]


class _Jittery(nn.Module):
    """A network whose middle part sleeps a random 0-20 ms: no spread of its times is ever small."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.body, self.head = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 2)

    def parts(self) -> dict[str, nn.Module]:
        return {"stem": self.stem, "stage1": self.body, "head": self.head}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(random.random() / 50)
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def test_a_noisy_measurement_is_recorded_as_unreliable_and_the_run_says_so(caplog: pytest.LogCaptureFixture
                                                                            ) -> None:
    from omegaconf import OmegaConf

    from data.digits import DigitsDataModule
    from models.train.build import time_parts
    from models.train.config import TrainerSettings
    from models.train.console import Announce

    t = measure(_Jittery(), 8, batch_size=2, repeats=5, layers=False, max_rounds=6)
    assert not t.reliable and any("varied by" in p or "add up" in p for p in t.problems)
    assert t.summary()["time/reliable"] is False and t.summary()["time/problems"]
    assert 5 <= t.rounds <= 6  # more rounds were tried, up to the limit
    cfg = OmegaConf.create({"measure": {"parts": True, "parts_budget_s": 1}})
    dm = DigitsDataModule(image_size=8, batch_size=2)
    with caplog.at_level("INFO", logger="models.train"):
        timing = time_parts(cfg, _Jittery(), dm, TrainerSettings({"accelerator": "cpu"}), False)
        assert not timing.reliable and not caplog.records  # not before the start line: after it, in one short line
        record = {"model": "jittery", "params": 1, "macs": 1, "data/image_size": 8, "data": "digits",
                  "run_dir": "runs/x", **timing.summary()}
        trainer = SimpleNamespace(is_global_zero=True, ckpt_path=None, current_epoch=0, global_step=0)
        Announce(SimpleNamespace(data=record, update=record.update)).on_train_start(trainer, SimpleNamespace())
    assert [r.getMessage() for r in caplog.records] == [
        "jittery (1 params, 0.0 MMACs/image at 8 px) on digits: starting, open-ended (?, ?) in runs/x",
        "warning: per-part times unreliable on this busy machine (results.json time/problems; reports mark them ‡): "
        "time them alone with scripts/complexity.py measure=true"]


def test_timing_in_place_changes_nothing_the_run_trains_with() -> None:
    """No copy: the network is timed in place and handed back with the same buffers, gradients, flag and RNG state."""
    net = models.build("resnet20", num_classes=10).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    measure(net, 8, batch_size=2, repeats=3, channels_last=True, layers=False)
    assert torch.equal(torch.rand(3), expected)  # the global RNG stream is where it was
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters()) and net.stem.conv.weight.is_contiguous()
