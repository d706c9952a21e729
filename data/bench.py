"""Throughput of the CIFAR train pipelines: device-resident batched augmentation vs torchvision DataLoaders.

    python -m data.bench --root ../shared/data/cifar10 --seconds 3 [--device cuda] [--workers 0 2] [--threads 1]

Counts augmented, normalised train images per second delivered on ``--device`` (DataLoader batches are
copied there too, as Lightning would). Without ``--root`` it uses a synthetic CIFAR-format copy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterable

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from data.cifar import CIFARDataModule
from data.synthetic import write_cifar


class PILCIFAR(Dataset):
    """What torchvision.datasets.CIFAR10.__getitem__ does: HWC uint8 -> PIL -> classic transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std) -> None:
        self.data = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.tf = T.Compose(
            [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
        )

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.tf(Image.fromarray(self.data[i])), self.labels[i]


def rate(loader: Iterable, seconds: float, device: torch.device, trials: int = 3) -> float:
    """Best of ``trials`` timings of at least ``seconds`` each (the machine may be shared: take the least disturbed)."""
    it = iter(loader)
    next(it)  # warm-up (worker start-up, first allocation) is not timed
    best = 0.0
    for _ in range(trials):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            try:
                x, _ = next(it)
            except StopIteration:  # next epoch
                it = iter(loader)
                continue
            x = x.to(device, non_blocking=True)
            n += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    root = args.root or write_cifar(tempfile.mkdtemp(), n_train=20000, n_test=100).parent
    dm = CIFARDataModule(root=str(root), verify=False, batch_size=args.batch_size, device_resident=True)
    dm.setup()
    images, labels = dm.splits["train"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, batch {args.batch_size}")
    loader = dm.train_dataloader()
    if device.type != "cpu":  # the datamodule uses the trainer's device; standalone we rebuild on --device
        from data.device import DeviceLoader

        loader = DeviceLoader(
            images, labels, args.batch_size, mean=dm.mean, std=dm.std, train=True, pad=4, flip=True, device=device
        )
    results = {"device-resident (batched tensor ops)": rate(loader, args.seconds, device)}
    for w in args.workers:
        dm_dl = CIFARDataModule(
            root=str(root), verify=False, batch_size=args.batch_size, device_resident=False, num_workers=w
        )
        dm_dl.setup()
        results[f"DataLoader, v2 on uint8 tensors, {w} workers"] = rate(dm_dl.train_dataloader(), args.seconds, device)
        pil = DataLoader(
            PILCIFAR(images, labels, dm.mean, dm.std),
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=w,
            persistent_workers=w > 0,
        )
        results[f"DataLoader, classic PIL CIFAR10 path, {w} workers"] = rate(pil, args.seconds, device)
    for k, v in results.items():
        print(f"{v:12,.0f} img/s  {k}")


if __name__ == "__main__":
    main()
