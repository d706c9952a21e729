"""data.transfer: CIFAR packed for an offline GPU box comes back image for image, label for label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data.cifar import CIFARDataModule, load_pickle
from data.synthetic import write_cifar
from data.transfer import decode_images, encode_images, main, pack, unpack

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10" / "cifar-10-batches-py"


def test_codec_is_lossless_on_any_pixels() -> None:
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    x[0] = 255  # flat, saturated and noisy planes alike
    x[1] = 0
    assert np.array_equal(decode_images(encode_images(x)), x)


def test_pack_unpack_rebuilds_every_batch_and_the_datamodule_reads_it(tmp_path: Path) -> None:
    src = write_cifar(tmp_path / "src", n_train=60, n_test=20)
    pieces = pack(tmp_path / "src", tmp_path / "packed", pieces=2)
    assert [p.name for p in pieces] == ["cifar-10-batches-py.1of2.tar", "cifar-10-batches-py.2of2.tar"]
    out = unpack(tmp_path / "out", pieces)
    for f in sorted(src.iterdir()):
        with open(f, "rb") as a, open(out / src.name / f.name, "rb") as b:
            want, got = load_pickle(a), load_pickle(b)
        assert want.keys() == got.keys()
        for key in want:
            assert np.array_equal(np.asarray(want[key]), np.asarray(got[key])), (f.name, key)
    dm = CIFARDataModule(root=str(out), verify=False, val_size=10, batch_size=8, num_workers=0)
    dm.setup("fit")
    assert dm.describe()["train_size"] + dm.describe()["val_size"] == 60


def test_one_piece_alone_rebuilds_its_files_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_cifar(tmp_path / "src", n_train=20, n_test=10)
    main(["pack", str(tmp_path / "src"), str(tmp_path / "packed"), "--pieces", "2"])
    first = sorted((tmp_path / "packed").glob("*.tar"))[0]
    main(["unpack", str(tmp_path / "out"), str(first)])
    rebuilt = sorted(p.name for p in (tmp_path / "out" / "cifar-10-batches-py").iterdir())
    assert rebuilt == ["batches.meta", "data_batch_1", "data_batch_2", "data_batch_3"]
    assert "1of2.tar" in capsys.readouterr().out


@pytest.mark.skipif(not SHARED.is_dir(), reason="the real CIFAR-10 copy (../shared/data/cifar10) is absent")
def test_real_cifar_images_compress_to_about_half_and_come_back_exactly() -> None:
    import lzma

    with open(SHARED / "test_batch", "rb") as f:
        x = np.asarray(load_pickle(f)["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)[:1000]
    residuals = encode_images(x)
    assert np.array_equal(decode_images(residuals), x)
    ratio = len(lzma.compress(residuals.tobytes(), preset=6)) / x.nbytes
    plain = len(lzma.compress(x.tobytes(), preset=6)) / x.nbytes
    assert ratio < 0.6 < plain, (ratio, plain)
