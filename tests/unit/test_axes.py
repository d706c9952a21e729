"""The two axes added as one NetSpec field each (model.se, model.preact): exact parameters, MACs and training
memory against hand counts and the independent counters (ptflops, torch's FlopCounterMode: profile(check=True)),
the published counts, and the combinations that make no network."""

from __future__ import annotations

import pytest
import torch

import models
from models import ConfigError
from models.complexity import profile
from models.memory import profile_memory
from models.spec import choice_groups

MAP = 65_536  # one 16x32x32 fp32 feature map, per image


def _block(**knobs: object) -> torch.nn.Module:
    with torch.device("meta"):
        return models.build("resnet20", num_classes=10, **knobs).stages.stage1[0]


def test_squeeze_excitation_on_resnet20_by_hand() -> None:
    """Per block on C channels, squeeze s = C // 16: FC C->s and s->C with biases = 2Cs + s + C params, 2Cs MACs.
    Stages of 3 blocks at C = 16, 32, 64 (s = 1, 2, 4): 3 x (49 + 162 + 580) = 2,373 params; 3 x (32 + 128 + 512)
    = 2,016 MACs per image. The gate's product and pooling are no multiply-accumulates of weights."""
    base = profile(models.build("resnet20", num_classes=10), 32, check=True)
    se = profile(models.build("resnet20", num_classes=10, se=True), 32, check=True)  # ptflops + FlopCounterMode
    assert se.params - base.params == 3 * ((2 * 16 * 1 + 1 + 16) + (2 * 32 * 2 + 2 + 32) + (2 * 64 * 4 + 4 + 64))
    assert se.params - base.params == 2_373
    assert se.macs - base.macs == 3 * (2 * 16 * 1 + 2 * 32 * 2 + 2 * 64 * 4) == 2_016
    blocks = [m for m in models.build("resnet20", num_classes=10, se=True).modules()
              if type(m).__name__ == "SqueezeExcitation"]
    assert [b.fc1.out_features for b in blocks] == [1] * 3 + [2] * 3 + [4] * 3
    narrow = models.build("resnet20", num_classes=10, se=True, se_reduction=64)
    assert min(m.fc1.out_features for m in narrow.modules() if hasattr(m, "fc1")) == 1  # at least one


def test_squeeze_excitation_memory_by_hand() -> None:
    """ResNet-20's first block with SE keeps, beyond its 5 maps: the branch output the gate multiplies (one more
    map), the pooled 16 channels (fc1's input, 64 B), fc1's output after the in-place ReLU (4 B) and the gate
    (16 floats, 64 B)."""
    plain, gated = profile_memory(_block(), 32, in_channels=16), profile_memory(_block(se=True), 32, in_channels=16)
    assert plain.saved(1) - 512 == 5 * MAP
    assert gated.saved(1) - plain.saved(1) == MAP + 64 + 4 + 64


def test_squeeze_excitation_in_plain_and_bottleneck_blocks() -> None:
    """SE-ResNet-50 as Hu et al. 2018 count it (28.09M); a VGG with SE gates every conv layer's output."""
    assert sum(p.numel() for p in models.build("resnet50", se=True).parameters()) == 28_088_024
    vgg = profile(models.build("vgg11_cifar", se=True), 32, check=True)
    assert vgg.params - profile(models.build("vgg11_cifar"), 32).params == sum(
        2 * c * (c // 16) + c // 16 + c for c in (64, 128, 256, 256, 512, 512, 512, 512))


def test_preactivation_by_hand() -> None:
    """Pre-activation moves each block's BNs in front of its convs (the first on the block's input width), drops
    the stem's BN and adds one BN before the head. ResNet-110: -32 (stem BN on 16) -32 (stage 2's first BN on 16
    instead of 32) -64 (stage 3's on 32 instead of 64) +128 (the final BN on 64) = the same 1,727,962 params, and
    the same MACs; ResNet-164 (bottleneck) has 1,704,154: He et al. 2016b's 1.7M for both."""
    for depth, params in ((110, 1_727_962), (164, 1_704_154)):
        post, pre = (profile(models.build(f"{p}resnet{depth}"), 32, check=True) for p in ("", "preact_"))
        assert post.params == pre.params == params and post.macs == pre.macs
        assert round(params / 1e6, 1) == 1.7
    head = models.build("preact_resnet110").head
    assert head.norm.num_features == 64 and not hasattr(models.build("preact_resnet110").stem, "bn")


def test_preactivation_memory_by_hand() -> None:
    """A pre-activation block keeps its input (bn1), bn1's output (the in-place ReLU; conv1 reads that storage),
    conv1's output (bn2) and bn2's output (the ReLU; conv2's input): 4 maps, one fewer than the original block,
    whose output ReLU after the addition keeps a fifth."""
    assert profile_memory(_block(preact=True), 32, in_channels=16).saved(1) - 512 == 4 * MAP


def test_the_preactivated_block_computes_bn_relu_conv() -> None:
    torch.manual_seed(0)
    net = models.build("preact_resnet110", num_classes=10).eval()
    block, x = net.stages.stage1[0], torch.randn(2, 16, 8, 8)
    expected = x + block.conv2(torch.relu(block.bn2(block.conv1(torch.relu(block.bn1(x))))))
    assert torch.allclose(block(x), expected, atol=1e-6)


@pytest.mark.parametrize("knobs, message", [
    ({"name": "vgg16", "preact": True}, "model.preact=true needs model.block=basic or bottleneck"),
    ({"name": "resnet20", "preact": True, "zero_init_residual": True}, "model.zero_init_residual=true with "
                                                                        "model.preact=true"),
    ({"name": "resnet20", "se": "yes"}, "model.se='yes' is not valid: choose one of true, false"),
    ({"name": "resnet20", "se": True, "se_reduction": 0}, "model.se_reduction=0 is not valid: use an integer >= 1"),
])
def test_combinations_that_make_no_network_are_one_line(knobs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        models.build(knobs)


def test_each_axis_is_a_design_choice_of_explain() -> None:
    from models.analysis.explain import explain

    groups = choice_groups()
    assert groups["squeeze_excitation"] == ("se", "se_reduction") and groups["preactivation"] == ("preact",)
    e = explain("resnet20", {"name": "resnet20", "se": True, "se_reduction": 8})
    by_hand = 3 * sum(2 * c * (c // 8) + c // 8 + c for c in (16, 32, 64))  # 3 x (82 + 292 + 1,096)
    assert e.choices == ["squeeze_excitation"] and e.attribution.shapley["params"]["squeeze_excitation"] == by_hand
    assert explain("resnet110", "preact_resnet110").choices == ["preactivation"]
