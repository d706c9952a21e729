"""Property tests over the model knobs: every valid combination builds, trains and is counted exactly;
every invalid one fails with a one-line ConfigError naming the key."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from models import ConfigError, NetSpec, build
from models.complexity import profile
from models.spec import BLOCKS, DOWNSAMPLES, HEADS, SHORTCUTS, STEMS


@st.composite
def valid_specs(draw: st.DrawFn) -> NetSpec:
    stages = draw(st.integers(1, 3))
    block = draw(st.sampled_from(BLOCKS))
    shortcut = draw(st.sampled_from(SHORTCUTS))
    widths = sorted(draw(st.lists(st.integers(3, 12), min_size=stages, max_size=stages)))  # A: never fewer channels
    return NetSpec(
        stem=draw(st.sampled_from(STEMS)), stem_width=draw(st.integers(1, widths[0])), block=block,
        residual=block != "plain" and draw(st.booleans()), shortcut=shortcut,
        downsample=draw(st.sampled_from(DOWNSAMPLES)),
        depths=draw(st.lists(st.integers(1, 2), min_size=stages, max_size=stages)), widths=widths,
        head=draw(st.sampled_from(HEADS)), head_pool=draw(st.integers(1, 3)),
        head_hidden=draw(st.lists(st.integers(1, 16), max_size=2)), dropout=draw(st.sampled_from([0.0, 0.5])),
        batch_norm=draw(st.booleans()), conv_bias=draw(st.booleans()), zero_init_residual=draw(st.booleans()),
        num_classes=draw(st.integers(1, 5)), in_channels=draw(st.integers(1, 3)),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_valid_knobs_build_run_and_count_exactly(spec: NetSpec) -> None:
    net = build(spec)
    size = spec.min_input_size()
    x = torch.randn(2, spec.in_channels, size, size)
    out = net(x)
    assert out.shape == (2, spec.num_classes)
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())

    c = profile(net, size, check=True)
    assert c.params == sum(p.numel() for p in net.parameters())  # independent: sum of numel
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(x[:1])
    assert c.macs == counter.get_total_flops() // 2  # independent: PyTorch's own counter, 2 FLOPs per MAC
    assert sum(p.macs for p in c.parts) == c.macs and sum(p.params for p in c.parts) == c.params


INVALID = {
    "stem": st.text(min_size=1, max_size=6).filter(lambda s: s not in STEMS),
    "block": st.text(min_size=1, max_size=6).filter(lambda s: s not in BLOCKS),
    "head": st.text(min_size=1, max_size=6).filter(lambda s: s not in HEADS),
    "downsample": st.text(min_size=1, max_size=6).filter(lambda s: s not in DOWNSAMPLES),
    "num_classes": st.integers(-5, 0),
    "stem_width": st.integers(-5, 0),
    "dropout": st.floats(1.0, 5.0) | st.floats(-5.0, -0.01),
    "batch_norm": st.sampled_from(["yes", 1, None]),
    "depths": st.just([0, 1]),
}


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(INVALID)).flatmap(lambda k: st.tuples(st.just(k), INVALID[k])))
def test_invalid_knobs_fail_with_the_key_named(bad: tuple[str, object]) -> None:
    key, value = bad
    with pytest.raises(ConfigError) as err:
        build("resnet20", **{key: value})
    message = str(err.value)
    assert f"model.{key}" in message and "\n" not in message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs(), st.data())
def test_input_smaller_than_the_downsampling_fails_naming_the_size(spec: NetSpec, data: st.DataObject) -> None:
    """Impossible combination: an input size below the model's total downsampling. Sizes at/above the minimum pass."""
    smallest = spec.min_input_size()
    spec.check_input_size(smallest)
    spec.check_input_size(data.draw(st.integers(smallest, smallest + 64)))
    if smallest == 1:
        return
    size = data.draw(st.integers(1, smallest - 1))
    with pytest.raises(ConfigError) as err:
        spec.check_input_size(size)
    message = str(err.value)
    assert message.startswith(f"data.image_size={size} is too small") and f"data.image_size>={smallest}" in message
    assert "\n" not in message


@st.composite
def invalid_combinations(draw: st.DrawFn) -> tuple[str, dict]:
    """Knob values that are each valid but impossible together, with the key the error must name."""
    kind = draw(st.sampled_from(["plain_residual", "shortcut_a_shrinks", "stage_lists_differ"]))
    n = draw(st.integers(1, 3))
    widths = sorted(draw(st.lists(st.integers(2, 12), min_size=n, max_size=n)))
    knobs: dict = {"depths": [1] * n, "widths": widths, "stem": draw(st.sampled_from(["resnet", "cifar"])),
                   "stem_width": widths[0]}
    if kind == "plain_residual":
        return "model.residual", {**knobs, "block": "plain", "residual": True}
    if kind == "shortcut_a_shrinks":  # a zero-padded identity cannot drop channels
        return "model.shortcut", {**knobs, "block": draw(st.sampled_from(["basic", "bottleneck"])), "residual": True,
                                  "shortcut": "A", "stem_width": widths[0] * 4 + draw(st.integers(1, 8))}
    return "model.depths", {**knobs, "depths": [1] * (n + draw(st.integers(1, 2)))}


@settings(max_examples=40, deadline=None)
@given(invalid_combinations())
def test_impossible_knob_combinations_fail_naming_the_key(bad: tuple[str, dict]) -> None:
    key, knobs = bad
    with pytest.raises(ConfigError) as err:
        NetSpec(**knobs)
    message = str(err.value)
    assert key in message and "\n" not in message
