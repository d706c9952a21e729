"""Training memory (models.memory): the bytes autograd saves for backward, counted exactly (hand counts for a tiny
conv net and one basic block), the same on the meta device as on real tensors, the bf16 prediction against what CPU
autocast really saves, and the arithmetic of the predicted peak and of the largest batch that fits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from models.memory import GIB, Memory, optimizer_buffers, profile_memory


def _tiny() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64, 10))


def test_tiny_conv_net_by_hand() -> None:
    """8x8 RGB input, batch 1, fp32. The conv saves its input (3x8x8x4 = 768 B); the in-place ReLU its result, the
    conv's output storage (4x8x8x4 = 1,024 B); the max-pool its input (that same storage: not counted twice) and its
    int64 indices (4x4x4x8 = 512 B); the Linear its input, a view of the pool's output (4x4x4x4 = 256 B). Weights are
    parameters, never activations."""
    with torch.device("meta"):
        net = _tiny()
    m = profile_memory(net, 8)
    by = {layer.name: (layer.float_per_image, layer.float_fixed, layer.other_per_image) for layer in m.layers}
    assert by == {"0": (768, 0, 0), "1": (1024, 0, 0), "2": (0, 0, 512), "4": (256, 0, 0)}
    assert m.saved(1) == 2560 and m.saved(3) == 3 * 2560
    assert m.params == 3 * 4 * 9 + 64 * 10 + 10 and m.weights == 3 * 4 * 9 + 64 * 10


def test_one_basic_block_by_hand() -> None:
    """ResNet-20's first block on a 16x32x32 input (65,536 B per feature map): per image it keeps its input (conv1),
    conv1's output (bn1), bn1's output (the in-place ReLU; conv2 reads that same storage), conv2's output (bn2) and
    the block's output (the final ReLU): 5 x 65,536. Fixed: each BN's running mean and variance and its batch mean
    and inverse std, 4 x 16 floats = 256 B, twice."""
    with torch.device("meta"):
        block = models.build("resnet20", num_classes=10).stages.stage1[0]
    m = profile_memory(block, 32, in_channels=16)
    assert sum(layer.float_per_image for layer in m.layers) == 5 * 65_536
    assert sum(layer.float_fixed for layer in m.layers) == 2 * 256
    assert m.saved(1) == 5 * 65_536 + 512 and m.saved(4) == 4 * 5 * 65_536 + 512


def _saved_by_autograd(net: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the storages a real forward of `net` saves for backward, each once, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x)
    return sum(v for k, v in seen.items() if k not in params)


def test_meta_count_equals_real_tensors() -> None:
    """The meta device (shapes only) counts exactly what a real forward saves (storages told apart by address)."""
    net = models.build("resnet20", num_classes=10).train()
    assert profile_memory(net, 32).saved(3) == _saved_by_autograd(net, torch.zeros(3, 3, 32, 32))
    assert net.training  # the caller's model untouched (counted on a meta copy)


def test_bf16_prediction_matches_what_autocast_saves() -> None:
    """Under bf16 autocast, floating-point activations are saved at 2 bytes and each conv/linear weight gets a
    2-byte copy: the prediction is within 1% of what CPU autocast really keeps."""
    net = models.build("resnet20", num_classes=10).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        real = _saved_by_autograd(net, torch.zeros(8, 3, 32, 32))
    m = profile_memory(net, 32)
    assert m.saved(8, "bf16-mixed") + 2 * m.weights == pytest.approx(real, rel=0.01)
    assert m.saved(8, "bf16-mixed") < 0.6 * m.saved(8)


def test_vgg16_keeps_its_activations_in_the_early_stages() -> None:
    """Why VGG's full-resolution convs limit the batch: 73 MB saved per image at 224 px, 71% of it in the first two
    stages, against ResNet-34's 32 MB; the FC head holds 89% of the parameters and 0.4% of the activations."""
    with torch.device("meta"):
        vgg, r34 = models.build("vgg16"), models.build("resnet34")
    mv, mr = profile_memory(vgg, 224), profile_memory(r34, 224)
    assert mv.saved(1) == 73_355_264 and mr.saved(1) == 32_351_232
    parts = mv.part_saved(1)
    assert parts["stage1"] == 602_112 + 2 * 12_845_056 + 6_422_528  # input, two conv outputs, pool indices
    assert (parts["stage1"] + parts["stage2"]) / mv.saved(1) == pytest.approx(0.709, abs=1e-3)
    assert parts["head"] / mv.saved(1) < 0.005


def test_peak_and_largest_batch_arithmetic() -> None:
    m = Memory(params=1000, weights=900, layers=[])
    assert optimizer_buffers("sgd") == 1 and optimizer_buffers("sgd", momentum=0) == 0
    assert optimizer_buffers("adamw") == 2
    assert m.states(1) == 4 * 1000 * 3 and m.states(2) == 4 * 1000 * 4
    with torch.device("meta"):
        net = _tiny()
    m = profile_memory(net, 8)
    per_image = m.saved(1) + m.transient(1)
    assert m.peak(10) == m.states(1) + 10 * per_image
    assert m.peak(10, "bf16-mixed") == m.states(1) + 2 * m.weights + m.saved(10, "bf16-mixed") + \
        m.transient(10, "bf16-mixed")
    fits = m.largest_batch(1 / 1024)  # 1 MiB
    assert m.peak(fits) <= GIB / 1024 < m.peak(fits + 1)
    assert Memory(params=10**9, weights=0).largest_batch(1) == 0  # 12 GB of states: not one image in 1 GiB
