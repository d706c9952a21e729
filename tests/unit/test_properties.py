"""Property tests over the model knobs: every valid combination builds, trains and is counted exactly;
every invalid one fails with a one-line ConfigError naming the key."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from models import ConfigError, NetSpec, build
from models.complexity import profile
from models.spec import knob_help, knob_names

# Test-sized draws for the knobs whose declared range would build slow networks (the draw is still a value the
# declaration takes); every other knob is drawn from its declaration alone (`from_declaration`), so a knob added to
# NetSpec is drawn here without this file changing. Stage lists get one entry per stage; widths never shrink
# (shortcut=A cannot drop channels, an impossible combination tested below).
SMALL = {"stem_width": st.integers(1, 12), "head_pool": st.integers(1, 3), "num_classes": st.integers(1, 5),
         "in_channels": st.integers(1, 3), "head_hidden": st.lists(st.integers(1, 16), max_size=2)}
STAGE_LISTS = {"depths": st.integers(1, 2), "widths": st.integers(3, 12)}


def from_declaration(hint: object) -> st.SearchStrategy:
    """Values a knob's declared type takes (Literal choices, bools, bounded numbers, lists of them)."""
    import typing

    from models.utils.declare import choices

    if choices(hint):
        return st.sampled_from(choices(hint))
    if hint is bool:
        return st.booleans()
    base, *marks = typing.get_args(hint) if typing.get_origin(hint) is typing.Annotated else (hint,)
    low = next((getattr(m, "ge", None) for m in marks if getattr(m, "ge", None) is not None), 0)
    if base is int:
        return st.integers(int(low), int(low) + 8)
    if base is float:
        high = next((getattr(m, "lt", None) or getattr(m, "le", None) for m in marks
                     if getattr(m, "lt", None) or getattr(m, "le", None)), low + 1)
        return st.floats(low, high, exclude_max=True)
    raise AssertionError(f"no strategy for {hint}: add one to SMALL")


@st.composite
def valid_specs(draw: st.DrawFn) -> NetSpec:
    stages = draw(st.integers(1, 3))
    knobs = {}
    for name in knob_names():
        if name in STAGE_LISTS:
            knobs[name] = draw(st.lists(STAGE_LISTS[name], min_size=stages, max_size=stages))
        else:
            knobs[name] = draw(SMALL.get(name) or from_declaration(knob_help(name)["hint"]))
    knobs["widths"] = sorted(knobs["widths"])
    knobs["stem_width"] = min(knobs["stem_width"], knobs["widths"][0])
    try:
        return NetSpec(**knobs)
    except ConfigError:  # an impossible combination (e.g. residual plain blocks): tested on its own below
        assume(False)


def test_every_knob_is_drawn() -> None:
    for name in knob_names():
        assert name in SMALL or name in STAGE_LISTS or from_declaration(knob_help(name)["hint"]) is not None


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


def invalid_for(hint: object) -> st.SearchStrategy:
    """Values a knob's declared type refuses."""
    import typing

    from models.utils.declare import choices

    if choices(hint):
        return st.text(min_size=1, max_size=6).filter(lambda v: v not in choices(hint))
    if hint is bool:
        return st.sampled_from(["yes", 1, None])
    base, *marks = typing.get_args(hint) if typing.get_origin(hint) is typing.Annotated else (hint,)
    low = next((getattr(m, "ge", None) for m in marks if getattr(m, "ge", None) is not None), None)
    if typing.get_origin(base) is tuple:
        return st.just([0, 1])
    if base is float:
        return st.floats(1.0, 5.0) | st.floats(-5.0, -0.01)
    return st.integers(int(low) - 5, int(low) - 1)


INVALID = {name: invalid_for(knob_help(name)["hint"]) for name in knob_names()}


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
