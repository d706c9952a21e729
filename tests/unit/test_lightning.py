"""The LightningModule: loss goes down, top-k metrics, LR schedules, weight-decay groups, option checks."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, TensorDataset

import models
from models.errors import ConfigError
from models.train.accuracy import LossWatch, SplitCounts
from models.train.module import Classifier
from models.train.optim import LRSchedule, OptimConfig, param_groups


def _tiny_digits(n: int = 32) -> TensorDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:n], dtype=torch.float32).div(16).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return TensorDataset(x, torch.tensor(d.target[:n]))


def test_loss_decreases_on_a_tiny_batch() -> None:
    pl.seed_everything(0, verbose=False)
    net = models.build("resnet20", num_classes=10)
    module = Classifier(net, 10, optim={"name": "sgd", "lr": 0.05}, sched={"name": "constant"})
    loader = DataLoader(_tiny_digits(), batch_size=32)
    x, y = next(iter(loader))
    module.eval()
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(module(x), y).item()
    module.train()
    trainer = pl.Trainer(accelerator="cpu", max_steps=25, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=loader)
    module.eval()
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(module(x), y).item()
    assert after < 0.5 * before, (before, after)
    assert trainer.global_step == 25


def test_top1_and_top5_accuracy() -> None:
    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4, 0, 0, 0, 0],     # label 4: 5th best -> top-5 only
                           [0.0, 0, 0, 0, 0, 0, 0, 0, 0, 9],     # label 9: top-1
                           [9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0]])    # label 9: neither
    y = torch.tensor([4, 9, 9])
    counts = SplitCounts(10, (1, 5))
    counts.update(logits[:2], y[:2], torch.tensor(1.0))  # uneven batches: per-image means
    counts.update(logits[2:], y[2:], torch.tensor(4.0))
    computed = counts.compute()
    assert computed.pop("per_class").tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0, 2]  # what was evaluated, per class
    assert {k: v.item() for k, v in computed.items()} == pytest.approx(
        {"loss": 2.0, "acc": 1 / 3, "acc_top5": 2 / 3, "images": 3})
    few = SplitCounts(3, (1, 5))  # top-5 on fewer than 5 classes is capped at 3, not an error
    few.update(torch.tensor([[0.0, 2, 1], [3.0, 2, 1]]), torch.tensor([2, 2]), torch.tensor(0.5))
    assert few.ks == (1, 3) and few.compute()["acc"] == 0 and few.compute()["acc_top5"] == 1


def test_multistep_he_et_al_fractions_of_64k() -> None:
    s = LRSchedule(name="multistep", total_steps=64000, milestones=[0.5, 0.75], gamma=0.1)
    assert s.milestone_steps() == [32000, 48000]
    assert [s(0), s(31999), s(32000), s(47999), s(48000), s(63999)] == pytest.approx([1, 1, .1, .1, .01, .01])


def test_warmup_then_cosine() -> None:
    s = LRSchedule(name="cosine", total_steps=110, warmup_steps=10, min_lr_ratio=0.0)
    assert s(0) == pytest.approx(0.1) and s(4) == pytest.approx(0.5) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.5)  # half way through the cosine part
    assert s(110) == pytest.approx(0.0, abs=1e-12)
    w = LRSchedule(name="multistep", total_steps=100, warmup_steps=4)
    assert [w(0), w(3), w(49), w(50), w(75)] == pytest.approx([0.25, 1.0, 1.0, 0.1, 0.01])


def test_onecycle() -> None:
    s = LRSchedule(name="onecycle", total_steps=100, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    assert s(0) == pytest.approx(1 / 25)
    assert s(30) == pytest.approx(1.0)
    assert s(100) == pytest.approx(1 / 25 / 1e4)
    assert all(s(i) <= s(i + 1) for i in range(30)) and all(s(i) >= s(i + 1) for i in range(30, 100))


def test_scheduler_is_stepped_per_iteration() -> None:
    """The LambdaLR built by configure_optimizers gives lr x factor(step) after each optimizer step."""
    module = Classifier(models.build("resnet20", num_classes=10), 10, optim={"lr": 0.1},
                        sched={"name": "multistep", "milestones": [0.5, 0.75], "warmup_steps": 2})
    loader = DataLoader(_tiny_digits(16), batch_size=2)  # 8 steps per epoch
    lrs: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()])
    trainer.fit(module, train_dataloaders=loader)
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_weight_decay_excludes_bn_and_bias() -> None:
    net = models.build("vgg11_cifar", num_classes=10)  # convs with bias + BN
    decay, no_decay = param_groups(net, 5e-4, decay_bn_bias=False)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    names = {id(p): n for n, p in net.named_parameters()}
    assert {names[id(p)].rsplit(".", 1)[-1] for p in no_decay["params"]} == {"weight", "bias"}
    assert all(names[id(p)].endswith("bias") or ".bn" in names[id(p)] for p in no_decay["params"])
    total = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == total
    (everything,) = param_groups(net, 1e-4, decay_bn_bias=True)
    assert sum(p.numel() for p in everything["params"]) == total


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_optimizers(name: str) -> None:
    module = Classifier(models.build("resnet20", num_classes=10), 10, optim={"name": name, "lr": 0.01},
                        sched={"name": "constant"})
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader(_tiny_digits(8), batch_size=4))
    opt = trainer.optimizers[0]
    assert type(opt).__name__ == {"sgd": "SGD", "adamw": "AdamW"}[name]
    assert math.isclose(opt.param_groups[0]["lr"], 0.01)


@pytest.mark.parametrize("kwargs, key", [
    ({"optim": {"lr": -0.1}}, "optim.lr"), ({"optim": {"name": "lbfgs"}}, "optim.name"),
    ({"optim": {"nesterov": True, "momentum": 0.0}}, "optim.nesterov"), ({"sched": {"name": "step"}}, "sched.name"),
    ({"sched": {"milestones": [0.75, 0.5]}}, "sched.milestones"), ({"label_smoothing": 1.5}, "label_smoothing"),
])
def test_bad_options_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Classifier(models.build("resnet20", num_classes=10), 10, **kwargs)


def test_channels_last_and_compile_flags_keep_state_dict_keys() -> None:
    net = models.build("resnet20", num_classes=10)
    keys = set(net.state_dict())
    module = Classifier(net, 10, channels_last=True, compile="default")
    assert {k.removeprefix("net.") for k in module.state_dict() if k.startswith("net.")} == keys
    assert module.net.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert OptimConfig().name == "sgd"


def test_padded_evaluation_counts_only_real_images() -> None:
    """The static-shape evaluation of CUDA-graph runs: the last batch padded to full size, padding never counted."""
    from data.digits import DigitsDataModule

    torch.manual_seed(0)
    net = models.build("resnet20", num_classes=10)
    results = []
    for pad in (False, True):
        dm = DigitsDataModule(image_size=8, batch_size=64, device_resident=True, pad_eval=pad)  # 270 = 4 x 64 + 14
        batches = list(dm.test_dataloader())
        assert len(batches[-1]) == (3 if pad else 2) and batches[-1][0].shape[0] == (64 if pad else 14)
        module = Classifier(net, 10)
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        results.append(trainer.test(module, datamodule=dm, verbose=False)[0])
    assert results[0] == results[1]  # identical accuracy, top-5 and loss
    assert 0 < results[0]["test/acc"] < 1


def test_compile_modes() -> None:
    from models.train.graphs import compile_mode, uses_cuda_graphs

    assert compile_mode("auto", on_cuda=True) == "reduce-overhead" and compile_mode("auto", on_cuda=False) is None
    assert compile_mode(True, False) == "default" and compile_mode(False, True) is None
    assert compile_mode("max-autotune", True) == "max-autotune"
    assert uses_cuda_graphs("reduce-overhead", True) and not uses_cuda_graphs("reduce-overhead", False)
    assert not uses_cuda_graphs("default", True)
    with pytest.raises(ConfigError, match="compile='fast' is not valid: choose one of false, true, auto, default"):
        compile_mode("fast", True)


def test_progress_bar_shows_the_epoch_that_ended_on_one_80_column_line(tmp_path) -> None:
    """Lightning calls callbacks' epoch-end hooks before the module's (which logs train/loss_epoch): the final bar
    must still show the LAST epoch's loss, not the one before, and fit on an 80-column terminal."""
    import io

    from lightning.pytorch.loggers import CSVLogger

    from data.digits import DigitsDataModule
    from models.train.console import ProgressBar

    out = io.StringIO()
    torch.manual_seed(0)
    module = Classifier(models.build("resnet20", num_classes=10), 10, optim={"lr": 0.05})
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, limit_train_batches=3, limit_val_batches=1,
                         callbacks=[ProgressBar(width=80, file=out)], logger=CSVLogger(tmp_path),
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(module, datamodule=DigitsDataModule(image_size=8, batch_size=32))
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    last_loss = float(trainer.logged_metrics["train/loss_epoch"])
    assert lines and all(len(line) <= 80 for line in lines), lines
    assert lines[-1].startswith("Epoch 2/2") and f"loss: {last_loss:.3f}" in lines[-1], (lines, last_loss)  # 1-based


@pytest.mark.parametrize("logger_name", ["torch._inductor.compile_fx.__perf_hints",
                                         "torch._inductor.cudagraph_utils.__cudagraphs"])
def test_compile_watch_hears_cudagraph_skips_on_the_perf_hints_logger_too(logger_name: str) -> None:
    """Inductor says why it skipped CUDA graphs on its cudagraphs logger in some torch versions, on a perf_hints one
    in others (2.11): the watch hears both (a skip on the real artifact logger, off by default), and a skip counted
    with no reason logged is recorded with a reason instead of failing the finished run."""
    import logging

    from torch._dynamo.utils import counters

    from models.train.graphs import NO_REASON, CompileWatch

    watch = CompileWatch("reduce-overhead", on_cuda=True)
    with watch:
        logging.getLogger(logger_name).info("skipping cudagraphs due to mutated inputs (1 instances)")
        counters["inductor"]["cudagraph_skips"] += 1
    out = watch.summary()
    assert out["compile/cudagraph_skips"] == 1
    assert out["compile/cudagraph_skip_reasons"] == "skipping cudagraphs due to mutated inputs (1 instances)"
    assert watch.handler not in logging.getLogger(logger_name).handlers  # the watch took its handler back
    silent = CompileWatch("reduce-overhead", on_cuda=True)
    with silent:
        counters["inductor"]["cudagraph_skips"] += 1
    assert silent.summary()["compile/cudagraph_skip_reasons"] == NO_REASON


@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA H200", "bf16-mixed", 989.4e12), ("NVIDIA H100 80GB HBM3", "bf16-mixed", 989.4e12),
    ("NVIDIA H100 PCIe", "16-mixed", 756e12), ("NVIDIA A100-SXM4-80GB", "32-true", 19.5e12),
    ("NVIDIA L40S", "bf16-mixed", 362.05e12), ("NVIDIA GeForce GTX 1080", "32-true", None)])
def test_mfu_knows_the_peaks_of_the_gpus_it_is_run_on(name: str, precision: str, peak: float | None) -> None:
    """Lightning's table misses "NVIDIA H200": MFU would be None. Ours: dense peaks by name and precision."""
    from models.utils.system import gpu_peak

    assert gpu_peak(name, precision) == peak


def test_evaluation_timing_syncs_once_per_loop_not_per_batch() -> None:
    """RunMeter times an evaluation loop as one window, synchronised after its warm-up batch and at its end: a
    per-batch device sync would stall a GPU's launch queue (on this CPU the sync is counted, not needed)."""
    from data.digits import DigitsDataModule
    from models.train.callbacks import RunMeter

    class Counting(RunMeter):
        syncs = 0

        def _sync(self, trainer):
            Counting.syncs += 1
            return super()._sync(trainer)

    meter = Counting(1e6, eval_warmup_steps=1)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_test_batches=5, callbacks=[meter])
    trainer.test(Classifier(models.build("resnet20", num_classes=10), 10),
                 datamodule=DigitsDataModule(image_size=8, batch_size=32), verbose=False)
    assert Counting.syncs == 2  # after the warm-up batch and at the loop's end, not after each of the 5 batches
    assert meter.eval.images == 4 * 32 and meter.eval.rate() > 0


class _OpCount(TorchDispatchMode):
    """The aten ops run inside the block (each one a kernel launch on a GPU, except views); `.item()`-like host
    syncs show as `_local_scalar_dense`."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


_VIEWS = {"detach", "select", "unsqueeze", "view", "alias", "slice", "t", "expand"}


def test_the_records_of_a_step_cost_a_few_kernels_and_no_host_sync() -> None:
    """What a step does beyond the network and the loss (accuracy top-1/top-5, loss sum, deferred finite watch, the
    eval means) runs as a few device kernels without a host sync: under CUDA graphs each is eager work around a
    replay, and a sync stalls the launch queue (torchmetrics' accuracy synced twice per batch and per k, ~70 ops)."""
    from data.digits import DigitsDataModule

    counts: dict[str, list[list[str]]] = {"train": [], "val": [], "test": []}

    class Counted(Classifier):
        def _count(self, split: str, hook, batch, i):
            out = self._step(batch)  # the network and the loss: not counted
            self._step = lambda b: out
            try:
                with _OpCount() as c:
                    result = hook(self, batch, i)
            finally:
                del self._step
            counts[split].append(c.ops)
            return result

        def training_step(self, batch, i):
            return self._count("train", Classifier.training_step, batch, i)

        def validation_step(self, batch, i):
            return self._count("val", Classifier.validation_step, batch, i)

        def test_step(self, batch, i):
            return self._count("test", Classifier.test_step, batch, i)

    module = Counted(models.build("resnet20", num_classes=10), 10, check_finite_every=50)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, max_epochs=1, limit_train_batches=4, limit_val_batches=2,
                         limit_test_batches=2, num_sanity_val_steps=0, log_every_n_steps=1000)
    dm = DigitsDataModule(image_size=8, batch_size=16)
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    for split, steps in counts.items():
        assert steps, split
        for ops in steps[1:]:  # the first step allocates the sums
            kernels = [op for op in ops if op not in _VIEWS]
            assert "_local_scalar_dense" not in ops, (split, ops)
            # evaluation also tallies images per class (one scatter_add: what a limited evaluation covered)
            assert len(kernels) <= (10 if split == "train" else 11), (split, kernels)
            assert (kernels.count("scatter_add_") == 1) == (split != "train"), (split, kernels)
    logged = trainer.callback_metrics  # (the counts themselves: test_top1_and_top5_accuracy, the DDP test)
    assert 0 <= logged["test/acc"] <= logged["test/acc_top5"] <= 1 and logged["test/loss"] > 0


def test_the_deferred_finite_watch_names_the_first_bad_step() -> None:
    watch = LossWatch(every=4)
    for step, loss in [(10, 1.0), (11, float("nan")), (11, 2.0), (12, float("inf")), (13, 1.0)]:
        assert not watch.full(step)
        watch.add(step, torch.tensor(loss))  # step 11 twice: micro-batches of one step; the NaN is kept
    assert watch.full(14)
    assert watch.first_bad() == 11
    assert watch.first_bad() == -1  # emptied by the check
    watch.add(20, torch.tensor(3.0))
    assert watch.first_bad() == -1


@pytest.mark.parametrize(("every", "accumulate"), [(3, 1), (2, 2)])
def test_the_step_rows_follow_lightnings_own_logging_rule(every: int, accumulate: int) -> None:
    """`logs_this_step` (public attributes only) says what Lightning's private `should_update_logs` says, on every
    batch, with gradient accumulation and on the last step (should_stop): a Lightning that changes its rule fails
    here, not in a user's history."""
    from data.digits import DigitsDataModule

    seen: list[tuple[int, bool, bool]] = []

    class Watched(Classifier):
        def training_step(self, batch, i):
            seen.append((self.global_step, self.logs_this_step(), self.trainer._logger_connector.should_update_logs))
            return super().training_step(batch, i)

    module = Watched(models.build("resnet20", num_classes=10), 10)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, max_steps=7, limit_val_batches=0, num_sanity_val_steps=0,
                         log_every_n_steps=every, accumulate_grad_batches=accumulate)
    trainer.fit(module, datamodule=DigitsDataModule(image_size=8, batch_size=64))
    assert len(seen) == 7 * accumulate
    assert [ours for _, ours, _ in seen] == [theirs for _, _, theirs in seen]
    assert any(ours for _, ours, _ in seen) and not all(ours for _, ours, _ in seen)


def test_a_checkpoint_of_the_torchmetrics_era_still_resumes_its_records() -> None:
    """Checkpoints written before val/acc_best and the epoch sums left torchmetrics' private state: their MaxMetric
    state and `_update_count` entries load into the new buffer and sums."""
    from types import SimpleNamespace

    from models.train.history import ResumeState

    module = Classifier(models.build("resnet20", num_classes=10), 10)
    old = {"metric_state": {"val_acc_best": {"max_value": torch.tensor(0.625), "_update_count": torch.tensor(3)}},
           "train_epoch_state": {"counts/correct": torch.tensor([[4, 6, 7, 8, 9]]), "counts/images": torch.tensor([10]),
                                 "counts/loss_sum": torch.tensor([12.5]), "counts/_update_count": torch.tensor([2])}}
    ResumeState().on_load_checkpoint(SimpleNamespace(world_size=1, global_rank=0), module, old)
    assert float(module.val_acc_best) == 0.625
    sums = module.counts["train_counts"].compute()
    assert (float(sums["acc"]), float(sums["acc_top5"]), float(sums["loss"])) == pytest.approx((0.4, 0.9, 1.25))
    never = {"metric_state": {"val_acc_best": {"state": {"max_value": torch.tensor(float("-inf"))}, "update_count": 0}}}
    ResumeState().on_load_checkpoint(SimpleNamespace(world_size=1, global_rank=0), module, never)
    assert float(module.val_acc_best) == 0.0  # MaxMetric's -inf before any validation: 0, finite
