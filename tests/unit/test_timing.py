"""Measured time per part and per layer (models.timing): shares that add up, a model left untouched, the
training conditions (channels_last, bf16), and one-line errors for a bad device or precision."""

from __future__ import annotations

import pytest
import torch

import models
from models.errors import ConfigError
from models.timing import measure, resolve_device, resolve_precision


def _hooks(net: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in net.modules())


@pytest.mark.parametrize("training", [True, False])
def test_shares_add_up_and_the_model_is_unchanged(training: bool) -> None:
    net = models.build("resnet20", num_classes=10).train(training)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    t = measure(net, 16, batch_size=4, repeats=2)
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
