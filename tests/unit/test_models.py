"""The generic network's knobs: independent, validated, and every combination the issue names builds and runs."""

from __future__ import annotations

import pytest
import torch
import yaml
from omegaconf import OmegaConf

import models
from helpers.runs import REPO
from models import ConfigError, NetSpec
from models.complexity import profile


@pytest.mark.parametrize("name", models.list_presets())
def test_every_preset_builds_and_runs_at_its_smallest_input(name: str) -> None:
    spec = models.get_spec(name)
    net = models.build(name).eval()
    size = spec.min_input_size()
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size))
    assert out.shape == (1, spec.num_classes)


SWAPS = [
    ("vgg16", dict(head="gap")),
    ("resnet34", dict(head="fc")),
    ("vgg16", dict(stem="resnet")),
    ("resnet18", dict(residual=False)),
    ("resnet50", dict(shortcut="A")),
    ("resnet18", dict(downsample="maxpool")),
    ("vgg11", dict(downsample="stride", batch_norm=True)),
    ("resnet20", dict(head="fc", head_pool=2)),
    ("resnet20", dict(block="bottleneck", widths=[4, 8, 16])),
    ("resnet20", dict(stem="vgg")),
    ("vgg11_cifar", dict(block="basic", residual=True, shortcut="B")),
]


@pytest.mark.parametrize("name,overrides", SWAPS)
def test_knob_overrides_build_and_train(name: str, overrides: dict) -> None:
    net = models.build(name, num_classes=7, **overrides)
    size = max(32, net.spec.min_input_size())
    x = torch.randn(2, 3, size, size)
    out = net(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    c = profile(net, size, check=True)
    assert c.params == sum(p.numel() for p in net.parameters())
    assert sum(p.params for p in c.parts) == c.params


def test_residual_false_removes_only_the_skip() -> None:
    res, plain = models.build("resnet18"), models.build("resnet18", residual=False)
    projections = sum(p.numel() for n, p in res.named_parameters() if ".shortcut." in n)
    assert projections > 0
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in res.parameters()) - projections


def test_head_knobs_are_independent_of_the_body() -> None:
    a, b = models.build("resnet34"), models.build("resnet34", head="fc")
    body = lambda m: [p.shape for n, p in m.named_parameters() if not n.startswith("head.")]
    assert body(a) == body(b)
    assert isinstance(b.head.classifier[0], torch.nn.Linear) and b.head.classifier[0].in_features == 512 * 7 * 7


def test_resnet_stem_downsamples_four_times() -> None:
    net = models.build("vgg16", stem="resnet")
    assert net.stem(torch.randn(1, 3, 224, 224)).shape == (1, 64, 56, 56)
    assert models.build("vgg16").stem(torch.randn(1, 3, 224, 224)).shape == (1, 3, 224, 224)


def test_forward_features_and_head_split() -> None:
    net = models.build("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    feats = net.forward_features(x)
    assert feats.shape == (2, 64, 8, 8)
    torch.testing.assert_close(net.forward_head(feats), net(x))


def test_bottleneck_stride_on_3x3_v15() -> None:
    block = models.build("resnet50").stages.stage2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)


def test_zero_init_residual() -> None:
    net = models.build("resnet18", zero_init_residual=True)
    assert all(float(b.bn2.weight.abs().sum()) == 0 for stage in net.stages for b in stage)


BAD = [
    (dict(name="resnet99"), "unknown model preset 'resnet99'"),
    (dict(name="resnet18", stemm="vgg"), "unknown model knob 'stemm'"),
    (dict(name="resnet18", head="mlp"), "model.head='mlp' is not valid: choose one of fc, gap"),
    (dict(name="resnet18", block="dense"), "model.block='dense'"),
    (dict(name="resnet18", shortcut="C"), "model.shortcut='C'"),
    (dict(name="resnet18", residual="yes"), "model.residual='yes' is not valid: choose one of true, false"),
    (dict(name="vgg16", residual=True), "model.residual=true needs model.block=basic or bottleneck"),
    (dict(name="resnet18", depths=[2, 2]), "must be non-empty lists of the same length"),
    (dict(name="resnet18", widths=[64, 0, 256, 512]), "model.widths"),
    (dict(name="resnet20", widths=[64, 32, 16]), "model.shortcut=A (zero-padded identity) cannot reduce channels"),
    (dict(name="resnet18", num_classes=0), "model.num_classes=0 is not valid: use an integer >= 1"),
    (dict(name="vgg16", dropout=1.0), "model.dropout=1.0 is not valid: use a number in [0, 1)"),
]


@pytest.mark.parametrize("cfg,message", BAD)
def test_bad_knobs_name_the_key(cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        models.build(cfg)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_input_too_small_names_the_minimum() -> None:
    spec = models.get_spec("resnet18")
    spec.check_input_size(32)
    with pytest.raises(ConfigError, match="data.image_size>=32"):
        spec.check_input_size(16)
    assert models.get_spec("vgg16_cifar").min_input_size() == 32
    assert models.get_spec("resnet20").min_input_size() == 4


def test_depth_and_width_are_derived() -> None:
    assert [models.get_spec(n).depth for n in ("vgg16", "vgg19", "resnet18", "resnet50", "resnet110")] == \
        [16, 19, 18, 50, 110]
    assert models.get_spec("resnet20").knobs()["width"] == 16


def test_specs_accept_lists_and_stay_hashable() -> None:
    spec = NetSpec(depths=[1, 1], widths=[8, 16], stem="cifar", stem_width=8, num_classes=3)
    assert spec.depths == (1, 1) and hash(spec)


@pytest.mark.parametrize("name", models.list_presets())
def test_a_preset_config_composes_to_the_preset(name: str) -> None:
    """configs/model/<preset>.yaml (only what differs from the defaults) over _knobs.yaml (every knob at its
    default) composes to exactly the preset's network: a knob with a default needs no preset file edited."""
    from helpers.runs import compose_train

    composed = OmegaConf.to_container(compose_train([f"model={name}"]).model, resolve=True)
    assert models.get_spec({**composed, "num_classes": 10}) == models.get_spec(name, num_classes=10)
    on_disk = yaml.safe_load((REPO / "configs" / "model" / f"{name}.yaml").read_text())
    defaults = yaml.safe_load((REPO / "configs" / "model" / "_knobs.yaml").read_text())
    assert all(on_disk[k] != defaults[k] for k in on_disk if k not in ("name", "defaults"))  # no knob at its default
