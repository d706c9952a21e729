"""Complexity accounting: three independent counts agree, the breakdown adds up, the model is left untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import models
from helpers.cli import Result, run_cli
from helpers.runs import REPO
from models.analysis.compare import compare, complexity_markdown, write_outputs
from models.complexity import count_params, profile


def test_parts_and_layers_add_up() -> None:
    c = profile(models.build("resnet18"), 224, check=True)
    assert [p.name for p in c.parts] == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert sum(p.params for p in c.parts) == c.params
    assert sum(p.macs for p in c.parts) == c.macs == sum(layer.macs for layer in c.layers)
    assert c.part("stem").activations == 64 * 56 * 56  # after the stride-2 conv and the max-pool
    assert c.part("stage4").activations == 512 * 7 * 7
    assert c.part("head").activations == 1000
    conv1 = next(layer for layer in c.layers if layer.name == "stem.conv")
    assert conv1.macs == 64 * 112 * 112 * 3 * 7 * 7 and conv1.output_shape == (64, 112, 112)


def test_summary_keys_and_units() -> None:
    s = profile(models.build("resnet20"), 32).summary()
    assert s["flops"] == 2 * s["macs"] == 2 * 40_551_040
    assert s["params/head"] == 650 and s["macs/head"] == 640
    assert abs(sum(v for k, v in s.items() if k.startswith("params_share/")) - 1) < 1e-9
    assert s["bias_adds"] == 10  # the Linear's bias; convs carry none


def test_counting_leaves_the_model_untouched() -> None:
    net = models.build("resnet20").train()
    hooks = lambda m: sum(len(x._forward_hooks) + len(x._forward_pre_hooks) for x in m.modules())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    profile(net, 32)
    assert net.training and all(m.training for m in net.modules())
    assert hooks(net) == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_trainable_params_respect_requires_grad() -> None:
    net = models.build("resnet20")
    for p in net.stem.parameters():
        p.requires_grad_(False)
    total, trainable = count_params(net)
    assert total - trainable == 16 * 3 * 9 + 32
    assert profile(net, 32).trainable_params == trainable


def test_disagreeing_counters_fail_loudly() -> None:
    """An op that only one counter sees (a grouped einsum ptflops counts as bmm, the per-layer sum does not)."""

    class Sneaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :4] @ self.w

    with pytest.raises(RuntimeError, match="MAC counts disagree"):
        profile(Sneaky(), 8, check=True)


def test_compare_and_outputs(tmp_path: Path) -> None:
    rows = compare(["resnet20", {"label": "r20 fc", "name": "resnet20", "head": "fc"}])
    assert rows[0].complexity.input_size == (32, 32) and rows[0].knobs["num_classes"] == 10
    assert rows[1].complexity.params == 269_722 - 650 + 64 * 512 + 512 + 512 * 512 + 512 + 5130
    md = complexity_markdown(rows)
    assert "| resnet20 | 20 | 32 | 269,722 | 40,551,040 |" in md and "FLOPs = 2 x MACs" in md
    paths = write_outputs(rows, tmp_path)
    png = paths[-1].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "macs_share/head" in paths[1].read_text().splitlines()[0]


@pytest.fixture(scope="module")
def seed_comparison(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """`python scripts/complexity.py out=DIR` (the seed comparison), run once, in this process."""
    out = tmp_path_factory.mktemp("complexity")
    return out, run_cli("complexity", [f"out={out}"], cwd=out)


def test_complexity_script_seed_comparison(seed_comparison: tuple[Path, Result]) -> None:
    out_dir, out = seed_comparison
    assert out.returncode == 0, out.stderr
    assert "| vgg16 | 16 | 224 | 138,357,544 | 15,470,264,320 |" in out.stdout
    assert "0.0% / 10.6% / 89.4%" in out.stdout  # VGG-16's head holds 89.4% of its parameters
    assert "| vgg16 + GAP head | 14 | 224 | 15,227,688 |" in out.stdout
    assert {p.name for p in out_dir.iterdir()} == {f"complexity.{e}" for e in ("json", "csv", "md", "png")}


def test_costs_page_table_is_the_generated_one(seed_comparison: tuple[Path, Result]) -> None:
    """docs/costs.md's complexity table is pasted from the script's output, not typed."""
    readme = (REPO / "docs" / "costs.md").read_text()
    table = seed_comparison[1].stdout.split("\n\n")[0].strip()
    assert table in readme


def _layer(name: str, preset: str, size: int = 224):
    with torch.device("meta"):
        net = models.build(preset)
    return next(layer for layer in profile(net, size).layers if layer.name == name)


def test_weight_reuse_bytes_and_intensity_by_hand() -> None:
    """VGG-16's FC1 uses each weight once per image, its conv1_1 at every one of 224 x 224 pixels."""
    fc1 = _layer("head.classifier.0", "vgg16")  # 25088 -> 4096
    assert (fc1.macs, fc1.params, fc1.weights) == (102_760_448, 102_764_544, 102_760_448)
    assert fc1.macs_per_weight == 1.0 and fc1.macs_per_param == 102_760_448 / 102_764_544
    assert (fc1.input_elements, fc1.activations) == (25_088, 4_096)
    assert fc1.bytes_moved() == 4 * (102_764_544 + 25_088 + 4_096) == 411_174_912  # fp32, batch 1
    assert fc1.intensity() == 2 * 102_760_448 / 411_174_912  # 0.4998 FLOP/byte: memory-bound
    assert fc1.bytes_moved(2, 64) == 2 * (102_764_544 + 64 * (25_088 + 4_096))  # bf16: weights once per batch
    conv = _layer("stages.stage1.0.conv", "vgg16")  # 3 -> 64, 3x3, 224x224, with bias
    assert (conv.macs, conv.params, conv.weights) == (86_704_128, 1_792, 1_728)
    assert conv.macs_per_weight == 224 * 224 == 50_176 and conv.macs_per_param == 48_384
    assert conv.bytes_moved() == 4 * (1_792 + 3 * 224 * 224 + 64 * 224 * 224) == 13_454_336
    assert conv.intensity() == 2 * 86_704_128 / 13_454_336  # 12.9 FLOP/byte


def test_a_resnet_basic_block_by_hand() -> None:
    conv1 = _layer("stages.stage1.0.conv1", "resnet18")  # 64 -> 64, 3x3 at 56x56, no bias
    assert (conv1.macs, conv1.params) == (56 * 56 * 64 * 64 * 9, 36_864) == (115_605_504, 36_864)
    assert conv1.macs_per_param == 56 * 56 == 3_136
    assert conv1.bytes_moved() == 4 * (36_864 + 2 * 64 * 56 * 56) == 1_753_088
    assert conv1.intensity() == 2 * 115_605_504 / 1_753_088  # 131.9 FLOP/byte
    with torch.device("meta"):
        c = profile(models.build("resnet18"), 224, check=True)
    block = [layer for layer in c.layers if layer.name.startswith("stages.stage1.0.")]
    # (the block's one ReLU module runs twice: after bn1 and after the residual addition)
    assert [layer.kind for layer in block] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "Identity",
                                               "ReLU"]
    moved, intensity = c.part_traffic("stage1")
    stage = [layer for layer in c.layers if layer.part == "stage1"]
    assert moved == sum(layer.bytes_moved() for layer in stage)
    assert intensity == 2 * sum(layer.macs for layer in stage) / moved
