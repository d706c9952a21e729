"""What a person sees (issue 12): the console of real runs through scripts/train.py, read as text.

One line per event (no message twice, Lightning's INFO lines only in <run dir>/train.log), none of the warnings the
project silences, a bounded digits run, the resume line after a SIGKILL, and `-v` bringing everything back."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from helpers.kills import train as killable_train
from helpers.runs import run_train_script, script_env, wandb_env

# The start line names the images per split and per class: 1,797 digits, stratified by the default seed.
DIGITS_SPLITS = "(1,257/270/270 train/val/test images, 122-128/26-28/26-28 per class)"
# Console text the project must never show (unless verbose): causes it cannot act on, or that it fixed at the source.
SILENCED = ("LeafSpec", "litlogger", "anonymous setting", "srun", "GPU available", "Restoring states",
            "wandb: Tracking run", "Experiment logs directory")
RUN = ["experiment=digits_quick", "trainer.max_epochs=2", "logger=wandb", "measure.parts_budget_s=5"]


def _console(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    tmp = tmp_path_factory.mktemp("console")
    env = {**script_env(tmp), **wandb_env(tmp / "wandb")}
    env.pop("WANDB_SILENT")  # the project itself must keep wandb quiet
    proc = run_train_script([*RUN, f"hydra.run.dir={tmp / 'run'}"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run", _console(proc)


@pytest.mark.slow
def test_a_digits_run_prints_a_short_console_without_repeats(digits_run: tuple[Path, list[str]]) -> None:
    run_dir, lines = digits_run
    assert len(lines) <= 40, "\n".join(lines)
    repeated = [line for line, n in Counter(lines).items() if n > 1]
    assert not repeated, repeated
    shown = "\n".join(lines)
    assert not [s for s in SILENCED if s in shown], shown
    assert re.search(rf"resnet20 \(269,722 params, 10\.1 MMACs/image at 16 px\) on digits {re.escape(DIGITS_SPLITS)}: "
                     rf"starting, 78 steps "
                     rf"\(cpu, 32-true\) in {re.escape(str(run_dir))}", shown)
    assert re.search(r"^test/acc\s+0\.\d{4}$", shown, re.M) and "wandb sync" in shown
    assert not any(line.startswith(("INFO:", "[20")) for line in lines)  # no second copy in another format


@pytest.mark.slow
def test_train_log_keeps_everything_with_timestamps(digits_run: tuple[Path, list[str]]) -> None:
    run_dir, _ = digits_run
    log = (run_dir / "train.log").read_text()
    stamp = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[[\w.]+\]\[(INFO|WARNING)\] - "
    assert re.search(stamp + r"GPU available: False", log, re.M)  # Lightning's INFO: in the file, not on screen
    assert re.search(stamp + r"resnet20 .* starting, 78 steps", log, re.M)
    assert re.search(stamp + r"Restoring states from the checkpoint path at .*best\.ckpt", log, re.M)


@pytest.mark.slow
def test_verbose_brings_library_messages_back(tmp_path: Path) -> None:
    proc = run_train_script(["trainer.max_epochs=1", "data.image_size=8", "trainer.limit_train_batches=2",
                             "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none", "-v",
                             "measure.parts=false", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GPU available: False" in proc.stdout and "Restoring states" in proc.stdout


@pytest.mark.slow
def test_a_rerun_after_sigkill_says_it_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    killed = killable_train(run_dir, tmp_path, "train_step:7")  # SIGKILL before step 7: last.ckpt is step 6's
    assert killed.returncode != 0
    again = killable_train(run_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = _console(again)
    resume = [line for line in lines if "resuming from" in line]
    assert resume == [f"resnet20 (269,722 params, 2.5 MMACs/image at 8 px) on digits {DIGITS_SPLITS}: resuming from "
                      f"{run_dir}/checkpoints/last.ckpt at epoch 1, step 6 of 15 steps (cpu, 32-true) in {run_dir}"]
    assert not any("starting" in line for line in lines)
