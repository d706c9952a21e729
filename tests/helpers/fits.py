"""Fitting helpers for data tests: a tiny model, a few-batch fit, and a recorder of which samples each rank saw."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn


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
