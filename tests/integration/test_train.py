"""End-to-end runs on the built-in digits: results.json, divergence, and bad input through scripts/train.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import models
from helpers.runs import FAST_TRAIN, compose_train
from models.complexity import profile
from models.errors import ConfigError
from models.train import schema
from models.train.config import config_hash
from models.train.records import read_results
from models.train.run import train
from models.utils.provenance import code_version

KEYS = [
    "status", "run_dir", "experiment", "tags", "seed", "model", "model/stem", "model/block", "model/residual",
    "model/head", "model/depths", "model/widths", "model/depth", "model/width", "model/num_classes", "data",
    "data/name", "data/image_size", "data/batch_size", "data/train_size", "data/val_size", "data/test_size",
    "params", "trainable_params", "macs", "flops", "params/head", "params_share/head", "macs/stage1",
    "macs_share/stem", "val/acc_best", "val/acc", "test/acc", "test/acc_top5", "test/loss", "test_last/acc",
    "test_last/acc_top5", "train/images_per_s", "eval/images_per_s", "train/data_wait_frac", "peak_memory_mb",
    "peak_memory_kind", "mfu", "epochs", "steps", "epoch_time_s", "wall_time_s", "hardware/device",
    "hardware/num_devices", "software/torch", "software/cuda", "software/lightning", "precision", "channels_last",
    "compile", "overrides", "time/total/fwdbwd_ms", "time/stage1/fwd_ms", "time_share/head", "wall_time_s/last",
    "invocations", "sched/total_steps", "data/val_source", "data/test_source",
]


def test_results_json(finished_wandb_run: dict) -> None:
    run_dir: Path = finished_wandb_run["run_dir"]
    r = json.loads((run_dir / "results.json").read_text())
    assert r == read_results(run_dir)
    missing = [k for k in KEYS if k not in r]
    assert not missing, missing
    assert r["status"] == "finished" and r["run_dir"] == str(run_dir.resolve())
    assert r["experiment"] == "digits_quick" and "demo" in r["tags"] and r["seed"] == 0
    assert r["model"] == "resnet20" and r["model/depth"] == 20 and r["model/width"] == 16
    assert r["model/depths"] == [3, 3, 3] and r["model/num_classes"] == 10
    assert r["data"] == "digits" and r["data/image_size"] == 8 and r["data/batch_size"] == 32
    # params / MACs are exactly profile() of the same network at the run's input size
    expected = profile(models.build("resnet20", num_classes=10), 8).summary()
    assert {k: r[k] for k in expected} == pytest.approx(expected)
    assert r["epochs"] == 2 and r["steps"] == 8  # 2 epochs x limit_train_batches=4
    for key in ("val/acc", "val/acc_best", "test/acc", "test/acc_top5", "test_last/acc", "test_last/acc_top5"):
        assert 0.0 <= r[key] <= 1.0, key
    assert r["val/acc_best"] >= r["val/acc"] - 1e-9 and r["test/acc_top5"] >= r["test/acc"]
    assert math.isfinite(r["test/loss"]) and r["test/loss"] > 0
    assert r["train/images_per_s"] > 0 and r["eval/images_per_s"] > 0
    assert 0 <= r["train/data_wait_frac"] < 1 and 0 < r["mfu"] < 1
    assert r["peak_memory_mb"] > 10 and r["peak_memory_kind"] == "cpu_peak_rss"
    assert r["epoch_time_s"] > 0 and r["wall_time_s"] >= r["epoch_time_s"]
    assert r["hardware/num_devices"] == 1 and r["software/torch"] == torch.__version__
    assert r["precision"] == "32-true" and r["channels_last"] is False and r["compile"] is False
    assert "data.image_size=8" in r["overrides"]
    # measured once before fit, at the run's batch size: every part's time, shares adding up to 1
    parts = ("stem", "stage1", "stage2", "stage3", "head")
    assert r["time/batch_size"] == 32 and all(r[f"time/{p}/fwdbwd_ms"] > 0 for p in parts)
    assert sum(r[f"time_share/{p}"] for p in parts) == pytest.approx(1.0)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert Path(r["best_checkpoint"]).is_file()
    text = (run_dir / "results.json").read_text() + (run_dir / "config.yaml").read_text()
    assert "api_key" not in text.lower()
    # which code produced it, and which configuration (seed and where/how it ran left out)
    assert r["code/commit"] == code_version()["code/commit"] and len(r["code/commit"]) == 40
    assert isinstance(r["code/dirty"], bool) and (r["code/diff_hash"] is not None) == r["code/dirty"]
    assert r["config_hash"] == config_hash(finished_wandb_run["cfg"]) and len(r["config_hash"]) == 16
    # training memory, the fourth cost, predicted at the run's batch and precision
    assert r["memory/saved_b1_bytes"] == sum(r[f"memory/saved_b1/{p}"] for p in parts) > 0
    assert r["memory/batch"] == 32 and r["memory/peak_bytes"] > r["memory/states_bytes"] == 4 * 3 * r["params"]
    # every key is one the schema describes (README "What every run records")
    assert schema.unknown(r) == []


def test_same_configuration_same_hash_whatever_the_seed_and_paths() -> None:
    a = compose_train(["seed=1", "data.num_workers=0", "logger=csv", "run_dir=/x"])
    b = compose_train(["seed=2", "logger=none", "run_dir=/y"])
    assert config_hash(a) == config_hash(b) != config_hash(compose_train(["optim.lr=0.05"]))


def test_a_resume_on_other_code_says_so_and_keeps_the_first() -> None:
    from models.train.run import code_record

    now = code_version()
    assert "code/first" not in code_record({})  # a fresh run
    assert "code/first" not in code_record({k: now[k] for k in ("code/commit", "code/dirty", "code/diff_hash")})
    older = {"code/commit": "0" * 40, "code/dirty": False, "code/diff_hash": None}
    assert code_record(older)["code/first"] == older
    assert code_record({**older, "code/first": {"code/commit": "1" * 40}})["code/first"] == {"code/commit": "1" * 40}


def test_divergence_is_recorded_with_its_step(tmp_path: Path) -> None:
    overrides = [*FAST_TRAIN, "logger=csv", f"run_dir={tmp_path}", "optim.lr=1e6", "sched.name=constant",
                 "sched.warmup_steps=0", "trainer.max_epochs=3"]
    r = train(compose_train(overrides), overrides=overrides)
    assert r["status"] == "diverged" and isinstance(r["diverged_at_step"], int)
    assert 0 <= r["diverged_at_step"] < 12 and r["steps"] == r["diverged_at_step"]
    assert "test/acc" not in r and read_results(tmp_path)["status"] == "diverged"
    for ckpt in (tmp_path / "checkpoints").glob("*.ckpt"):  # whatever was saved before is finite
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    again = train(compose_train(overrides), overrides=overrides)  # a diverged run is a result, not retried
    assert again == read_results(tmp_path)


def test_a_refused_run_is_recorded_as_failed(tmp_path: Path) -> None:
    """Bad input found while building the run (the catalogue, tests/reliability/test_bad_inputs.py, has every
    message): the record says failed, with the one-line message, and nothing else is written."""
    with pytest.raises(ConfigError, match=r"model\.num_classes=100 but data=digits has 10 classes"):
        train(compose_train([*FAST_TRAIN, "logger=none", f"run_dir={tmp_path}", "model.num_classes=100"]))
    record = read_results(tmp_path)
    assert record["status"] == "failed" and record["error"].startswith("model.num_classes=100 but data=digits")
    assert not (tmp_path / "checkpoints").exists()


def test_channels_last_and_bf16_switches(tmp_path: Path) -> None:
    overrides = [*FAST_TRAIN, "logger=none", f"run_dir={tmp_path}", "channels_last=true",
                 "trainer.precision=bf16-mixed", "trainer.max_epochs=1"]
    r = train(compose_train(overrides), overrides=overrides)
    assert r["status"] == "finished" and r["channels_last"] is True and r["precision"] == "bf16-mixed"
    assert math.isfinite(r["test/loss"]) and r["mfu"] > 0


@pytest.mark.parametrize("extra", [
    ["trainer.accumulate_grad_batches=3"],                          # 4 batches, 2 epochs -> ceil(4/3) x 2 = 4 steps
    ["trainer.limit_train_batches=0.1"],                            # a fraction of the 39 batches of an epoch
    ["trainer.max_steps=5"],                                        # stops inside the second epoch
    ["trainer.max_epochs=-1", "trainer.max_steps=6"],              # Lightning's "no epoch limit", bounded by steps
    ["trainer.val_check_interval=0.5"],                            # validation twice per epoch: same steps
    ["trainer.check_val_every_n_epoch=null", "trainer.val_check_interval=3"],
], ids=["accumulate", "fraction", "max-steps", "unlimited-epochs", "val-twice", "val-by-steps"])
def test_every_accepted_length_gives_the_schedule_the_real_number_of_steps(tmp_path: Path, extra: list[str]) -> None:
    overrides = [*FAST_TRAIN, "logger=none", f"run_dir={tmp_path}", *extra]
    r = train(compose_train(overrides), overrides=overrides)
    assert r["status"] == "finished" and r["steps"] > 0
    assert r["sched/total_steps"] == r["steps"]  # the cosine schedule ends exactly where training ends


def test_an_open_ended_run_on_a_constant_schedule_stops_on_the_clock(tmp_path: Path) -> None:
    overrides = [*FAST_TRAIN, "logger=none", f"run_dir={tmp_path}", "trainer.max_epochs=-1",
                 "trainer.max_time=00:00:00:03", "sched.name=constant"]
    r = train(compose_train(overrides), overrides=overrides)
    assert r["status"] == "finished" and r["sched/total_steps"] is None and r["steps"] > 0


def test_part_timing_can_be_switched_off(tmp_path: Path) -> None:
    overrides = [*FAST_TRAIN, "logger=none", f"run_dir={tmp_path}", "trainer.max_epochs=1", "measure.parts=false"]
    r = train(compose_train(overrides), overrides=overrides)
    assert r["status"] == "finished" and not [k for k in r if k.startswith(("time/", "time_share/"))]
