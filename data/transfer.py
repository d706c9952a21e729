"""CIFAR to an offline GPU box in small pieces: a lossless codec for torchvision's CIFAR pickles.

A lent GPU machine often has no network and takes a few tens of MB per upload; CIFAR-10's pickles are 178 MB and
generic compressors leave 76% of them (xz). Here each image plane is replaced by its residual against the LOCO-I
median predictor (what lossless JPEG-LS uses: left, up and upper-left neighbours), G and B by their difference to
the previous plane's residual, and the result is xz-compressed: 52% of the pixels' bytes on the JPEG-derived copy in
../shared (95 MB for all 60,000 images), in two pieces of under 50 MB.

    python -m data.transfer pack <dir with cifar-10-batches-py> <out dir> [--pieces 2]   # here
    python -m data.transfer unpack <out root> <piece.tar> [<piece.tar> ...]              # there

Unpacking rebuilds every batch file with the same images, labels and filenames (not the same bytes: torchvision's
md5 check refuses it, so read it with data.verify=false, as the re-encoded copy it is).
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import pickle
import tarfile
from pathlib import Path

import numpy as np

from data.cifar import _TV, load_pickle

SUFFIX = ".cifarz"


def _median_prediction(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """LOCO-I: a = left, b = up, c = upper-left neighbour (int16 arrays)."""
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    return np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))


def encode_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 3, H, W) -> uint8 residuals of the same shape (mod 256), which compress far better."""
    x = images.astype(np.int16)
    a, b, c = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    a[..., :, 1:], b[..., 1:, :], c[..., 1:, 1:] = x[..., :, :-1], x[..., :-1, :], x[..., :-1, :-1]
    r = (x - _median_prediction(a, b, c)) % 256
    r[:, 1:] = (r[:, 1:] - r[:, :-1]) % 256  # the colour planes' residuals are alike: keep their difference
    return r.astype(np.uint8)


def decode_images(residuals: np.ndarray) -> np.ndarray:
    """The inverse of `encode_images`: pixel by pixel in raster order (each needs its decoded neighbours), every
    image and plane at once."""
    r = residuals.astype(np.int16)
    for p in range(1, r.shape[1]):
        r[:, p] = (r[:, p] + r[:, p - 1]) % 256
    n, planes, h, w = r.shape
    x = np.zeros((h + 1, w + 1, n, planes), dtype=np.int16)  # a zero border stands for the missing neighbours
    res = r.transpose(2, 3, 0, 1)
    for i in range(h):
        for j in range(w):
            x[i + 1, j + 1] = (res[i, j] + _median_prediction(x[i + 1, j], x[i, j + 1], x[i, j])) % 256
    return x[1:, 1:].transpose(2, 3, 0, 1).astype(np.uint8)


def pack_file(path: Path) -> bytes:
    """One CIFAR pickle -> a header line (everything but the pixels, as JSON) + xz-compressed residuals."""
    with open(path, "rb") as f:
        entry = load_pickle(f)
    header = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in entry.items() if k != "data"}
    if "data" not in entry:  # batches.meta
        return json.dumps({"meta": header}).encode() + b"\n"
    data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    header["shape"] = list(data.shape)
    body = lzma.compress(encode_images(data).tobytes(), preset=9 | lzma.PRESET_EXTREME)
    return json.dumps(header).encode() + b"\n" + body


def unpack_file(blob: bytes) -> dict:
    """The inverse of `pack_file`: the dict a CIFAR pickle holds."""
    line, body = blob.split(b"\n", 1)
    header = json.loads(line)
    if "meta" in header:
        return header["meta"]
    shape = header.pop("shape")
    residuals = np.frombuffer(lzma.decompress(body), dtype=np.uint8).reshape(shape)
    return {**header, "data": decode_images(residuals).reshape(shape[0], -1)}


def pack(root: str | Path, out: str | Path, pieces: int = 2, name: str = "cifar10") -> list[Path]:
    """Every file of `<root>/cifar-10-batches-py` into `pieces` tar files of packed batches under `out`."""
    folder = Path(root) / _TV[name].base_folder
    if not folder.is_dir():
        folder = Path(root)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, group in enumerate(np.array_split(np.array(files, dtype=object), pieces)):
        path = out / f"{folder.name}.{k + 1}of{pieces}.tar"
        with tarfile.open(path, "w") as tar:
            for f in group:
                blob = pack_file(f)
                info = tarfile.TarInfo(f"{folder.name}/{f.name}{SUFFIX}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        paths.append(path)
    return paths


def unpack(out_root: str | Path, pieces: list[str | Path]) -> Path:
    """Rebuild the CIFAR folder under `out_root` from packed pieces; returns `out_root` (use it as data.root)."""
    out_root = Path(out_root)
    for piece in pieces:
        with tarfile.open(piece) as tar:
            for member in tar.getmembers():
                if not member.isfile() or not member.name.endswith(SUFFIX) or ".." in Path(member.name).parts:
                    continue
                target = out_root / member.name[: -len(SUFFIX)]
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as f:
                    pickle.dump(unpack_file(tar.extractfile(member).read()), f, protocol=2)
    return out_root


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("root")
    p.add_argument("out")
    p.add_argument("--pieces", type=int, default=2)
    u = sub.add_parser("unpack")
    u.add_argument("out_root")
    u.add_argument("pieces", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        for path in pack(args.root, args.out, args.pieces):
            print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    else:
        print(unpack(args.out_root, args.pieces))


if __name__ == "__main__":
    main()
