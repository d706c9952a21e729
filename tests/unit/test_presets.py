"""Presets equal torchvision's models and the papers' numbers, to the unit."""

from __future__ import annotations

import pytest
import torch
from torchvision import models as tvm

import models
from models.complexity import profile

IMAGENET = [n for n, p in models.PRESETS.items() if p.reference.startswith("torchvision.models.")]

# Exact figures from the issue (torchvision's documented params and "GFLOPS" = MACs), at 224x224, 1000 classes.
PUBLISHED = {
    "vgg16": (138_357_544, 15_470_264_320),
    "vgg19": (143_667_240, 19_632_062_464),
    "resnet18": (11_689_512, 1_814_073_344),
    "resnet34": (21_797_672, 3_663_761_408),
    "resnet50": (25_557_032, 4_089_184_256),
}
# CIFAR at 32x32, 10 classes (He et al. Table 6: 0.27M / 0.46M / 0.66M / 0.85M / 1.7M params).
CIFAR = {
    "resnet20": (269_722, 40_551_040),
    "resnet56": (853_018, 125_485_696),
    "resnet110": (1_727_962, 252_887_680),
    "vgg16_cifar": (14_728_266, 313_201_664),
}
TABLE6_MILLIONS = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7}


def meta(build, *args, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return build(*args, **kwargs)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_imagenet_counts(name: str) -> None:
    c = profile(meta(models.build, name), 224, check=True)
    assert (c.params, c.macs) == PUBLISHED[name]
    assert c.flops == 2 * c.macs


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_published_cifar_counts(name: str) -> None:
    c = profile(models.build(name), 32, check=True)
    assert (c.params, c.macs) == CIFAR[name]


@pytest.mark.parametrize("name", sorted(TABLE6_MILLIONS))
def test_he_table6_params(name: str) -> None:
    params = sum(p.numel() for p in models.build(name).parameters())
    assert round(params / 1e6, 2 if params < 1e6 else 1) == TABLE6_MILLIONS[name]


def test_every_imagenet_preset_is_covered() -> None:
    expected = {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")} | {
        f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    assert set(IMAGENET) == expected


@pytest.mark.parametrize("name", IMAGENET)
def test_counts_equal_torchvision(name: str) -> None:
    ours = profile(meta(models.build, name), 224, check=True)
    theirs = profile(meta(getattr(tvm, name)), 224, check=True)
    assert (ours.params, ours.macs, ours.bias_adds) == (theirs.params, theirs.macs, theirs.bias_adds)


@pytest.mark.parametrize("name", IMAGENET)
def test_torchvision_weights_give_identical_outputs(name: str) -> None:
    """Copy torchvision's tensors into ours in order: shapes must line up one to one and outputs must match."""
    torch.manual_seed(0)
    theirs = getattr(tvm, name)().eval()
    with torch.device("meta"):  # no init of our own: every tensor is overwritten with torchvision's below
        ours = models.build(name).eval()
    ours.to_empty(device="cpu")
    src, dst = theirs.state_dict(), ours.state_dict()
    assert [v.shape for v in src.values()] == [v.shape for v in dst.values()]
    ours.load_state_dict(dict(zip(dst.keys(), src.values())))
    x = torch.randn(2, 3, 64, 64)  # adaptive pooling makes any size >= 32 valid; 64 keeps VGG fast on CPU
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("depth", [18, 34])
def test_plain_imagenet_is_resnet_without_projections(depth: int) -> None:
    """He et al.'s plain-18/34: torchvision's ResNet minus its 1x1 projection shortcuts."""
    tv = meta(getattr(tvm, f"resnet{depth}"))
    proj_params = sum(p.numel() for n, p in tv.named_parameters() if ".downsample." in n)
    proj_macs = sum(layer.macs for layer in profile(tv, 224, check=True).layers if ".downsample." in layer.name)
    ours, theirs = profile(meta(models.build, f"plain{depth}"), 224, check=True), profile(tv, 224, check=True)
    assert ours.params == theirs.params - proj_params
    assert ours.macs == theirs.macs - proj_macs


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_plain_equals_resnet_counts(depth: int) -> None:
    """Option A shortcuts have no parameters and no MACs, so plain-n and ResNet-n cost the same."""
    a = profile(models.build(f"plain{depth}"), 32, check=True)
    b = profile(models.build(f"resnet{depth}"), 32, check=True)
    assert (a.params, a.macs) == (b.params, b.macs)


def test_cifar_resnet_matches_reference_layout() -> None:
    """Option A: 16->32 channels pads 8 zero channels on each side of a spatially subsampled identity."""
    net = models.build("resnet20")
    block = net.stages.stage2[0]
    x = torch.randn(1, 16, 32, 32)
    y = block.shortcut(x)
    assert y.shape == (1, 32, 16, 16)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_vgg16_head_holds_most_parameters() -> None:
    vgg = profile(meta(models.build, "vgg16"), 224, check=True)
    gap = profile(meta(models.build, "vgg16", head="gap"), 224, check=True)
    assert vgg.part("head").params == 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    assert round(vgg.part("head").params / vgg.params, 3) == 0.894
    assert vgg.params - gap.params == 123_129_856  # ~123M removed by global average pooling
