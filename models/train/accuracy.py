"""A split's loss and top-1/top-5 accuracy counted on the device without a host sync; the training loss's finite watch.

torchmetrics' MulticlassAccuracy one-hot encodes the labels on every update, and `one_hot` checks their range on
the host (two `.item()` calls): a device sync per batch and per top-k metric that stalls a GPU's launch queue
and every CUDA-graph replay. Here one `topk` serves both ks: the rank at which the label appears is cumulated,
so a batch costs a handful of kernels and no sync (MeanMetric's loss mean cost another eight, and a copy of the
weight to the device); the sums are added across ranks by torchmetrics.
"""
from __future__ import annotations

import torch
from torchmetrics import Metric


class SplitCounts(Metric):
    """A split's images, how many have their label among the k highest logits (k = 1..max(ks), capped at the
    number of classes), the summed loss and the images of each class, all on the device. compute(): {"loss": mean
    per image, "acc": top-1, "acc_top5": top-5 (key "acc_topK" for each k > 1 of `ks`), "images", and
    "per_class" unless `per_class=False`},
    exact across uneven batches and ranks."""

    full_state_update = False

    def __init__(self, num_classes: int, ks: tuple[int, ...] = (1, 5), per_class: bool = True) -> None:
        super().__init__()
        self.ks = tuple(min(k, num_classes) for k in ks)
        self.names = tuple("acc" if k == 1 else f"acc_top{k}" for k in ks)
        # correct[r]: images whose label is among the r+1 highest logits (every rank up to the largest k: no index
        # tensor to copy to the device per batch)
        self.add_state("correct", torch.zeros(max(self.ks), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("loss_sum", torch.zeros(()), dist_reduce_fx="sum")
        # images of each class counted: what a limited evaluation really covered (scatter_add: no sync, unlike a
        # CUDA bincount, which must find the largest label first); off for training sums (one kernel less a step)
        self.count_classes = per_class
        if per_class:
            self.add_state("per_class", torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        """`loss`: the batch's mean loss."""
        top = logits.topk(max(self.ks), dim=1).indices
        # 1 from the rank where the label appears onwards (labels are unique in a row): column k-1 says "in top k"
        self.correct += (top == target.unsqueeze(1)).cumsum(dim=1).sum(dim=0)
        self.images += target.numel()
        self.loss_sum += loss.detach().float() * target.numel()
        if self.count_classes:
            self.per_class.scatter_add_(0, target, torch.ones_like(target))

    def sums(self) -> dict[str, torch.Tensor]:
        """The running sums (what a checkpoint carries to continue an epoch)."""
        return {k: v.detach() for k, v in self.metric_state.items()}

    def load_sums(self, sums: dict[str, torch.Tensor]) -> None:
        """Continue from `sums()` of an earlier process. The restored sums then count as an update (an empty batch
        through the public update()), so that compute() neither warns nor waits for a new batch."""
        for key in self.metric_state:
            setattr(self, key, sums[key].to(self.device, getattr(self, key).dtype))
        classes = max(self.ks)
        self.update(torch.zeros(0, classes, device=self.device), torch.zeros(0, dtype=torch.int64, device=self.device),
                    torch.zeros((), device=self.device))

    def compute(self) -> dict[str, torch.Tensor]:
        """The split's metrics, plus "images" (how many were counted) and "per_class" (how many of each class)."""
        n = self.images.clamp(min=1)
        out = {"loss": self.loss_sum / n, "images": self.images.float()}
        if self.count_classes:
            out["per_class"] = self.per_class.clone()
        out.update({name: (self.correct[k - 1].double() / n).float() for name, k in zip(self.names, self.ks)})
        return out


class LossWatch:
    """Each optimizer step's training loss added into a device buffer of `every` slots (one kernel, no sync);
    `first_bad()` (one sync) finds the first step whose loss was not finite. Micro-batches of one step add into the
    same slot, so a NaN is never overwritten."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.losses: torch.Tensor | None = None
        self.start = 0  # the optimizer step held in slot 0

    def add(self, step: int, loss: torch.Tensor) -> None:
        if self.losses is None:
            self.losses, self.start = torch.zeros(self.every, device=loss.device), step
        self.losses[step - self.start].add_(loss.detach().float())

    def full(self, step: int) -> bool:
        """The buffer has no slot for `step`: check before adding it."""
        return self.losses is not None and step - self.start >= self.every

    def first_bad(self) -> int:
        """The first optimizer step since the last check whose loss was not finite (-1: none); empties the buffer."""
        if self.losses is None:
            return -1
        bad = (~torch.isfinite(self.losses)).nonzero()  # the sync
        first = int(bad[0, 0]) + self.start if len(bad) else -1
        self.losses = None
        return first

