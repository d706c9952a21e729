"""Test and smoke-run helpers: writers for small real on-disk datasets, a tiny model and a batch recorder.

``write_cifar`` / ``write_image_folder`` write real CIFAR pickles / JPEG+PNG trees whose images carry a
class-dependent colour and stripe pattern plus noise (learnable). ``smoke_fit`` fits and tests ``TinyMLP`` on any
datamodule for a few CPU batches; ``BatchRecorder`` logs which samples each rank saw.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from torch import nn

from data.cifar import _TV


def class_images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N,size,size,3): colour from the class, stripe period from the class, plus noise."""
    n = len(labels)
    hue = (labels[:, None] * 37 + np.arange(3)[None, :] * 85) % 256  # (N,3)
    stripes = (np.arange(size)[None, :] % (2 + labels[:, None] % 5)) == 0  # (N,size)
    img = np.broadcast_to(hue[:, None, None, :], (n, size, size, 3)).astype(np.int16)
    img = img + 60 * stripes[:, None, :, None] + rng.integers(-20, 21, (n, size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_cifar(root: str | Path, name: str = "cifar10", n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """Write a CIFAR-format folder (``cifar-10-batches-py`` / ``cifar-100-python``) under ``root``; returns it.

    Same pickles as the real thing (latin1 dicts, ``data`` uint8 Nx3072 in R/G/B planes, ``labels`` or
    ``fine_labels``/``coarse_labels``, meta file). CIFAR-10 train is spread over data_batch_1..5.
    """
    tv, rng = _TV[name], np.random.default_rng(seed)
    folder = Path(root) / tv.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    num_classes = 10 if name == "cifar10" else 100

    def dump(fname: str, labels: np.ndarray) -> None:
        data = class_images(labels, 32, rng).transpose(0, 3, 1, 2).reshape(len(labels), 3072)
        entry: dict = {"data": data, "filenames": [f"img_{i}.png" for i in range(len(labels))]}
        if name == "cifar10":
            entry |= {"labels": labels.tolist(), "batch_label": fname}
        else:
            entry |= {"fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(), "batch_label": fname}
        with open(folder / fname, "wb") as f:
            pickle.dump(entry, f, protocol=2)

    train_labels = np.arange(n_train) % num_classes
    rng.shuffle(train_labels)
    for fname, part in zip(
        [f for f, _ in tv.train_list], np.array_split(train_labels, len(tv.train_list)), strict=True
    ):
        dump(fname, part)
    dump(tv.test_list[0][0], np.arange(n_test) % num_classes)
    meta = {tv.meta["key"]: [f"class_{i}" for i in range(num_classes)]}
    with open(folder / tv.meta["filename"], "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


def write_image_folder(
    root: str | Path,
    classes: list[str],
    per_class: dict[str, int],
    layout: str = "imagefolder",
    size: tuple[int, int] = (40, 30),
    seed: int = 0,
) -> Path:
    """Write a small tree of real JPEG/PNG files; ``per_class`` maps split -> images per class.

    ``imagefolder``: ``<split>/<class>/<i>.jpg|png``. ``tinyimagenet``: ``train/<wnid>/images/<wnid>_<i>.JPEG``,
    ``val/images/val_<i>.JPEG`` + ``val/val_annotations.txt`` and ``wnids.txt``.
    """
    root, rng = Path(root), np.random.default_rng(seed)
    w, h = size
    k = 0
    for split, count in per_class.items():
        for ci, cls in enumerate(classes):
            labels = np.full(count, ci)
            pics = class_images(labels, max(w, h), rng)[:, :h, :w]
            for i, pic in enumerate(pics):
                if layout == "tinyimagenet" and split == "train":
                    path = root / "train" / cls / "images" / f"{cls}_{i}.JPEG"
                elif layout == "tinyimagenet":  # only train/ and val/ carry labels
                    path = root / "val" / "images" / f"val_{k}.JPEG"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with open(root / "val" / "val_annotations.txt", "a") as f:
                        f.write(f"{path.name}\t{cls}\t0\t0\t{w - 1}\t{h - 1}\n")
                else:
                    path = root / split / cls / (f"{i}.png" if i % 3 == 2 else f"{i}.jpg")  # mix of formats
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pic).save(path, **({} if path.suffix == ".png" else {"quality": 90}))
                k += 1
    if layout == "tinyimagenet":
        (root / "wnids.txt").write_text("\n".join(classes) + "\n")
    return root


class TinyMLP(pl.LightningModule):
    """2-layer MLP classifier for smoke tests (module level so ddp_spawn can pickle it)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, batch_size=len(y), sync_dist=True)
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean(), batch_size=len(y), sync_dist=True)
        return loss

    def training_step(self, batch, _):
        return self._step(batch, "train")

    def validation_step(self, batch, _):
        self._step(batch, "val")

    def test_step(self, batch, _):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def smoke_fit(
    dm: pl.LightningDataModule,
    max_epochs: int = 1,
    limit_batches: int | float = 2,
    root_dir: str | Path | None = None,
    ckpt_path: str | Path | None = None,
    run_test: bool = True,
    **trainer_kwargs,
) -> tuple[pl.Trainer, dict[str, float]]:
    """Fit a TinyMLP on ``dm`` for a few CPU batches, then test it; returns (trainer, test metrics or {})."""
    model = TinyMLP(dm.in_channels * dm.image_size**2, dm.num_classes)
    kwargs = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        limit_train_batches=limit_batches,
        limit_val_batches=limit_batches,
        limit_test_batches=limit_batches,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=root_dir,
    )
    trainer = pl.Trainer(**{**kwargs, **trainer_kwargs})
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0] if run_test else {}
    return trainer, metrics


class BatchRecorder(pl.Callback):
    """Writes ``rank<r>.json`` to ``out_dir`` at fit end: per-sample md5s of every train (per epoch) and val batch.

    Module level so that ddp_spawn can pickle it; lets a test check DDP shards are disjoint and reshuffled.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir, self.seen = Path(out_dir), {}

    def _add(self, key: str, x: torch.Tensor) -> None:
        self.seen.setdefault(key, []).extend(hashlib.md5(r.cpu().numpy().tobytes()).hexdigest() for r in x)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._add(f"train{trainer.current_epoch}", batch[0])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._add(f"val{trainer.current_epoch}", batch[0])

    def on_fit_end(self, trainer, pl_module) -> None:
        record = {"world_size": trainer.world_size, "train_batches": len(trainer.train_dataloader), **self.seen}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
