"""Where an image-folder dataset's files are: its root (generic ImageFolder, Tiny-ImageNet, Imagenette/Imagewoof
layouts), its classes (all, a named subset or the first N) and the (path, label) list of each folder it has."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import Imagenette

from data.images import list_images
from models.errors import ConfigError

_IMAGENETTE_DIRS = ("imagenette2-160", "imagenette2-320", "imagenette2", "imagewoof2-160", "imagewoof2-320",
                    "imagewoof2")
Samples = list[tuple[Path, int]]


class FolderTree:
    """The files of one tree; label i is ``classes[i]`` (the order of ``class_subset``, else sorted folder names)."""

    def __init__(self, root: Path, layout: str, class_subset: list[str] | None, num_classes_subset: int | None,
                 imagenette_size: str = "160px", download: bool = False) -> None:
        self.root_setting, self.layout = root, layout
        self.class_subset, self.num_classes_subset = class_subset, num_classes_subset
        self.imagenette_size, self.download = imagenette_size, download
        self._classes: list[str] | None = None

    @property
    def root(self) -> Path:
        root = self.root_setting
        if self.layout == "imagenette" and not (root / "train").is_dir():
            preferred = Path(Imagenette._ARCHIVES[self.imagenette_size][0]).name.removesuffix(".tgz")
            for sub in (preferred, *_IMAGENETTE_DIRS):
                if (root / sub / "train").is_dir():
                    return root / sub
        if self.layout == "tinyimagenet" and (root / "tiny-imagenet-200" / "train").is_dir():
            return root / "tiny-imagenet-200"
        if not (root / "train").is_dir():
            hint = " or data.download=true" if self.layout == "imagenette" else ""
            raise ConfigError(
                f"{root}/train not found (data.root={root}): set data.root=<dir with train/<class>/ and val/>{hint}"
            )
        return root

    def exists(self) -> bool:
        try:
            return self.root.is_dir()
        except ConfigError:
            return False

    @property
    def classes(self) -> list[str]:
        """Selected class folder names (wnids)."""
        if self._classes is None:
            if self.layout == "imagenette" and self.download and not self.exists():
                available = sorted(Imagenette._WNID_TO_CLASS)  # known before the download
            else:
                available = self._available_classes()
            self._classes = self._select(available)
        return self._classes

    def _select(self, available: list[str]) -> list[str]:
        if self.class_subset is not None:
            missing = [c for c in self.class_subset if c not in available]
            if missing:
                raise ConfigError(
                    f"data.classes names {', '.join(missing)} not present in {self.root_setting}/train"
                    f" ({len(available)} classes there, e.g. {', '.join(available[:3])}): fix data.classes"
                )
            return list(dict.fromkeys(self.class_subset))
        if self.num_classes_subset is not None:
            if self.num_classes_subset > len(available):
                raise ConfigError(
                    f"data.num_classes_subset={self.num_classes_subset} but only {len(available)} classes exist:"
                    " lower data.num_classes_subset"
                )
            return available[: self.num_classes_subset]
        return available

    def _available_classes(self) -> list[str]:
        root = self.root
        wnids = root / "wnids.txt"
        if self.layout == "tinyimagenet" and wnids.is_file():
            return sorted(w.strip() for w in wnids.read_text().split() if w.strip())
        found = sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise ConfigError(f"{root}/train has no class folders: put images in train/<class>/ under data.root")
        return found

    def folders(self) -> dict[str, Samples]:
        """(path, label) lists of train/, val/ and (when present) test/, in a fixed order. Empty or missing class
        folders are collected in `problems` (not raised): the datamodule reports them with the unreadable files."""
        root, classes = self.root, self.classes
        self.problems: list[str] = []
        found = {"train": self._folder(root / "train", classes)}
        if self.layout == "tinyimagenet":
            found["val"] = self._tiny_val(root, classes)
            return found
        for name in ("val", "test"):
            if (root / name).is_dir():
                found[name] = self._folder(root / name, classes)
        if "val" not in found:
            raise ConfigError(f"{root}/val not found: add val/<class>/ images under data.root (model selection)")
        return found

    def _folder(self, folder: Path, classes: list[str]) -> Samples:
        if self.class_subset is None and self.num_classes_subset is None and folder.name != "train":
            extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
            if extra:  # labels would silently disagree with train's
                raise ConfigError(
                    f"{folder} has class folders {', '.join(extra[:5])} absent from train/: remove them or select"
                    " classes via data.classes"
                )
        return [(p, i) for i, c in enumerate(classes) for p in list_images(folder / c, self.problems)]

    def _tiny_val(self, root: Path, classes: list[str]) -> Samples:
        ann = root / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise ConfigError(
                f"{ann} not found: set data.root to an extracted tiny-imagenet-200"
                " (with val/images and val/val_annotations.txt)"
            )
        label = {c: i for i, c in enumerate(classes)}
        out, counts = [], dict.fromkeys(classes, 0)
        for line in ann.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in label:
                out.append((root / "val" / "images" / parts[0], label[parts[1]]))
                counts[parts[1]] += 1
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            raise ConfigError(
                f"{ann} lists no validation images for {', '.join(empty[:5])}: fix the file or drop those classes"
                " via data.classes"
            )
        missing = [p for p, _ in out if not p.is_file()]
        if missing:
            raise ConfigError(
                f"{missing[0]} (listed in {ann}) not found, {len(missing)} missing in all: restore val/images"
            )
        return sorted(out)
