"""Published numbers, as data with their source and the setting they hold for, so that a report can put them beside
a reproduction — ONLY where the run's setting matches the reference's (`compare`): a test error after He et al.'s
64k-iteration CIFAR-10 schedule is not comparable with three epochs on the digits.

He et al. 2016 ("Deep Residual Learning for Image Recognition", CVPR), Table 6: CIFAR-10 test error (%) of the
CIFAR ResNets (best of 5 runs; ResNet-110: "6.43", mean 6.61 +- 0.16), trained 64k iterations, batch 128, lr 0.1
/10 at 32k and 48k, weight decay 1e-4, 4-pixel padding + random crop + flip, 45k/5k train/val split.
torchvision's model docs (weights `IMAGENET1K_V1`, "Acc@1"): ImageNet-1k top-1 (%) on the 50,000 val images at
224 px (resize 256, centre crop) of the presets our networks equal (tests/unit/test_presets.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HE2016 = "He et al. 2016, Table 6"
TORCHVISION = "torchvision IMAGENET1K_V1 weights, Acc@1"


@dataclass(frozen=True)
class Reference:
    model: str  # preset name
    metric: str  # "test error %" or "top-1 %"
    value: float
    source: str
    dataset: str  # the run's data/name it needs
    recipe: str  # the run's experiment it needs (the schedule), or "" for none in this repo
    test_size: int  # the size of the evaluation split it was measured on
    steps: int | None = None  # the optimizer steps of the published schedule

    def accuracy(self) -> float:
        """As a top-1 fraction (what the runs record)."""
        return 1 - self.value / 100 if self.metric == "test error %" else self.value / 100


REFERENCES: tuple[Reference, ...] = (
    *(Reference(f"resnet{d}", "test error %", e, HE2016, "cifar10", "cifar10_resnet20", 10_000, 64_000)
      for d, e in ((20, 8.75), (32, 7.51), (44, 7.17), (56, 6.97), (110, 6.43))),
    *(Reference(m, "top-1 %", v, TORCHVISION, "imagenet-1k", "", 50_000) for m, v in (
        ("vgg11", 69.020), ("vgg11_bn", 70.370), ("vgg13", 69.928), ("vgg13_bn", 71.586), ("vgg16", 71.592),
        ("vgg16_bn", 73.360), ("vgg19", 72.376), ("vgg19_bn", 74.218), ("resnet18", 69.758), ("resnet34", 73.314),
        ("resnet50", 76.130), ("resnet101", 77.374), ("resnet152", 78.312))),
)


def reference_for(record: Mapping[str, Any]) -> Reference | None:
    """The published number for this run's preset, if there is one (`differences` says whether the run's network
    and setting are the published one)."""
    model = record.get("model")
    return next((r for r in REFERENCES if r.model == model), None)


def knob_differences(ref: Reference, record: Mapping[str, Any]) -> list[str]:
    """The knobs on which the run's network differs from the published preset's (a `model.head=fc` resnet20 is not
    He et al.'s ResNet-20): each as `model.<knob>=<run's> (published: <preset's>)`."""
    from models.errors import ConfigError
    from models.presets import get_spec
    from models.spec import knob_names

    try:
        preset = get_spec(ref.model, num_classes=int(record.get("data/num_classes") or 10)).config()
    except ConfigError:
        return []
    out = []
    for knob in knob_names():
        if knob in ("num_classes", "in_channels"):
            continue
        ran = record.get(f"model/{knob}", preset.get(knob))  # a knob the record predates: it ran at the default
        if (list(ran) if isinstance(ran, (list, tuple)) else ran) != preset.get(knob):
            out.append(f"model.{knob}={ran} (published: {preset.get(knob)})")
    return out


def differences(ref: Reference, record: Mapping[str, Any]) -> list[str]:
    """What in the run's setting differs from the reference's ([]: comparable): the network first, every knob of
    it, then the data, recipe, evaluation and schedule."""
    out = knob_differences(ref, record)
    if record.get("data/name") != ref.dataset and record.get("data") != ref.dataset:
        out.append(f"data {record.get('data/name') or record.get('data')} (published: {ref.dataset})")
    if ref.recipe and record.get("experiment") != ref.recipe:
        out.append(f"recipe {record.get('experiment')} (published: {ref.recipe}'s schedule)")
    if not ref.recipe:
        out.append("training recipe (published: torchvision's own, not in this repo)")
    if record.get("data/test_size") not in (None, ref.test_size):
        out.append(f"evaluated on {record.get('data/test_size')} images (published: {ref.test_size:,})")
    if ref.steps and record.get("steps") != ref.steps:
        out.append(f"{record.get('steps')} optimizer steps (published: {ref.steps:,})")
    return out
