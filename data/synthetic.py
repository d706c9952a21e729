"""Small real on-disk datasets with generated pixels, for machines without the real data (benchmarks, tests).

``write_cifar`` / ``write_image_folder`` write real CIFAR pickles / JPEG+PNG trees whose images carry a
class-dependent colour and stripe pattern plus noise (learnable). The benchmark uses them for speed where the real
CIFAR copy is absent (a GPU box without data); the tests use them to exercise the real file formats.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

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
