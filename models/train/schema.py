"""Every key a run's `results.json` may hold: its meaning and when it is written. The recorder refuses a key that is
not here (`check`), and the README's "What every run records" table is generated from this list (`markdown`).

`<part>` stands for stem / stage1..N / head (and `total` where the whole network is meant), `<knob>` for a model
knob (models/spec.py), `<key>` for what the datamodule describes (data/*.py `describe`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# When a key is written: at the start of every invocation, at each checkpoint, after fit, after test, on failure,
# on a stop by signal, at each validation.
WHEN = ("start", "checkpoint", "validation", "fit", "test", "failure", "signal")


@dataclass(frozen=True)
class Key:
    name: str  # may hold <part>, <knob>, <key>
    meaning: str
    when: str  # one of WHEN, or several joined by "/"

    def pattern(self) -> re.Pattern:
        escaped = re.escape(self.name).replace(re.escape("<part>"), r"[\w]+").replace(re.escape("<knob>"), r"\w+")
        return re.compile("^" + escaped.replace(re.escape("<key>"), r"[\w/]+") + "$")


SCHEMA: tuple[Key, ...] = (
    # the run
    Key("status", "`running` (in progress or interrupted), `finished`, `diverged` (with `diverged_at_step`), "
        "`failed` (with `error`)", "start/fit/test/failure"),
    Key("error", "the one-line reason of a failed or diverged run", "fit/failure"),
    Key("diverged_at_step", "the optimizer step whose loss (or weights) went NaN/inf", "fit"),
    Key("run_dir", "where the run lives", "start"),
    Key("experiment", "the named recipe (configs/experiment), wandb group", "start"),
    Key("ablation", "the named grid this run belongs to (configs/ablation)", "start"),
    Key("tags", "wandb tags", "start"),
    Key("seed", "the run's seed", "start"),
    Key("overrides", "the command-line overrides that made this run", "start"),
    Key("config_hash", "sha256 of the resolved configuration, the seed and the noise keys (paths, loggers, devices) "
        "left out: the seeds of one configuration share it", "start"),
    # code and machine
    Key("code/commit", "the git commit of the code that ran (null outside a git checkout)", "start"),
    Key("code/dirty", "the checkout had uncommitted changes to tracked files", "start"),
    Key("code/diff_hash", "sha256 of `git diff HEAD` when dirty", "start"),
    Key("code/version", "the package version (vgg-vs-resnet), for installs without git", "start"),
    Key("code/first", "the code (commit, dirty, diff hash) of the invocation that STARTED the run, when a resume "
        "ran other code", "start"),
    Key("hardware/<key>", "device, device type, number of devices, CPU, cores, torch threads, load average", "start"),
    Key("software/<key>", "torch, CUDA, Lightning, Python versions", "start"),
    Key("precision", "Lightning precision (32-true, bf16-mixed, ...)", "start"),
    Key("channels_last", "the network ran in channels_last memory format", "start"),
    Key("packed_jobs", "how many runs shared the device (1: it had it alone); reports mark packed img/s with †",
        "start"),
    # the model and its costs
    Key("model", "the preset name", "start"),
    Key("model/<knob>", "every knob of the network (stem, block, residual, head, depth, width, ...), flat", "start"),
    Key("params", "parameters", "start"),
    Key("trainable_params", "parameters that require gradients", "start"),
    Key("macs", "multiply-accumulates per image, forward, at the run's input size (= torchvision's GFLOPS)", "start"),
    Key("flops", "2 x macs", "start"),
    Key("bias_adds", "bias additions per image (not MACs)", "start"),
    Key("input_size", "the square input side the costs are counted at", "start"),
    Key("params/<part>", "parameters of the stem, each stage, the head", "start"),
    Key("macs/<part>", "MACs per image of each part", "start"),
    Key("activations/<part>", "output elements per image of each part", "start"),
    Key("params_share/<part>", "share of the parameters held by each part", "start"),
    Key("macs_share/<part>", "share of the MACs held by each part", "start"),
    Key("memory/saved_b1_bytes", "bytes of activations autograd saves for backward, one image, fp32 (counted "
        "exactly)", "start"),
    Key("memory/saved_b1/<part>", "the same per part", "start"),
    Key("memory_share/<part>", "each part's share of the saved activations", "start"),
    Key("memory/saved_bytes", "saved activations at the run's batch and precision", "start"),
    Key("memory/states_bytes", "fp32 weights + gradients + optimizer buffers", "start"),
    Key("memory/peak_bytes", "predicted peak of a training step at the run's batch and precision", "start"),
    Key("memory/batch", "the batch the memory keys are predicted at (per device)", "start"),
    Key("memory/precision", "the precision they are predicted at", "start"),
    Key("memory/max_batch_<key>", "the largest batch whose predicted peak fits in 16 / 80 GiB", "start"),
    Key("time/<part>/fwd_ms", "measured forward time PER IMAGE of the whole network (`total`) and each part "
        "(median of interleaved rounds, before training, on the run's device, batch and precision)", "start"),
    Key("time/<part>/fwdbwd_ms", "the same, forward+backward, per image", "start"),
    Key("time/<part>/fwdbwd_iqr_ms", "its interquartile range over the rounds, per image", "start"),
    Key("time_share/<part>", "each part's share of the parts' summed forward+backward time", "start"),
    Key("time/batch_size", "the batch the parts were timed at", "start"),
    Key("time/device", "where they were timed", "start"),
    Key("time/precision", "at which precision", "start"),
    Key("time/rounds", "how many interleaved rounds the medians are over", "start"),
    Key("time/reliable", "false when the times contradict themselves (spread too wide, forward > forward+backward, "
        "parts not adding up to the whole): reports mark such time shares ‡", "start"),
    Key("time/problems", "what contradicted itself", "start"),
    Key("time/parts_sum_ratio", "sum of the parts' times over the whole network's", "start"),
    # data
    Key("data", "the dataset", "start"),
    Key("data/<key>", "what was loaded: name, classes, image size, batch size per device, split sizes and sources "
        "(`data/val_source`, `data/test_source`, `data/val_is_test`), cache status, loader", "start/test"),
    Key("data/unreadable_images", "every unreadable image file (a failed run; also in unreadable_images.txt)",
        "failure"),
    # training
    Key("compile", "the torch.compile mode (false: eager)", "start/fit"),
    Key("compile/<key>", "what the compiler did: graphs, recompiles, graph breaks, CUDA-graph skips (+ reasons)",
        "fit/test"),
    Key("resumed_from", "the checkpoint this invocation resumed from", "start"),
    Key("resumed_at_step", "the optimizer step it resumed at", "start"),
    Key("steps", "optimizer steps done", "fit"),
    Key("epochs", "epochs done", "fit"),
    Key("sched/total_steps", "the optimizer steps the learning-rate schedule spans", "fit"),
    Key("train/images_per_s", "measured training throughput after warm-up", "fit"),
    Key("eval/images_per_s", "measured evaluation throughput", "fit/test"),
    Key("train/data_wait_frac", "share of step time spent waiting for data", "fit"),
    Key("epoch_time_s", "mean epoch time (validation included)", "fit"),
    Key("peak_memory_mb", "CUDA max allocated, or the process's peak RSS on CPU (measured)", "fit"),
    Key("peak_memory_kind", "which of the two", "fit"),
    Key("mfu", "model FLOP utilisation: 3 x flops x train images/s over the device peak", "fit"),
    Key("peak_flops", "that peak (GPU: table; CPU: measured matmul)", "fit"),
    Key("peak_flops_source", "where the peak comes from", "fit"),
    Key("measured_train_steps", "training steps after the meter's warm-up", "fit"),
    Key("train/measured_from", "Unix time of the first measured training step (packed runs: their windows' "
        "overlap)", "fit"),
    Key("train/measured_to", "Unix time of the last measured training step", "fit"),
    Key("train/pflops", "training compute so far: 3 x forward FLOPs x images seen, in PFLOPs", "validation/fit"),
    Key("train/wall_s", "wall time so far over every invocation, seconds", "validation/fit"),
    Key("curve", "one point per validation: [step, epoch, train/pflops, train/wall_s, val/acc]", "validation"),
    Key("val/acc", "last validation top-1", "fit"),
    Key("val/acc_top5", "last validation top-5", "fit"),
    Key("val/loss", "last validation loss", "fit"),
    Key("val/acc_best", "best validation top-1 (model selection)", "fit"),
    Key("val/images", "images the last validation evaluated (the whole split unless trainer.limit_val_batches "
        "took a stratified part of it)", "fit"),
    Key("val/images_per_class", "those images, per class", "fit"),
    Key("test/acc", "test top-1 on the best-val checkpoint", "test"),
    Key("test/acc_top5", "test top-5 on the best-val checkpoint", "test"),
    Key("test/loss", "test loss on the best-val checkpoint", "test"),
    Key("test_last/acc", "test top-1 on the last checkpoint", "test"),
    Key("test_last/acc_top5", "test top-5 on the last checkpoint", "test"),
    Key("test_last/loss", "test loss on the last checkpoint", "test"),
    Key("test/images", "images test/* was measured on (the whole split unless trainer.limit_test_batches took a "
        "stratified part of it)", "test"),
    Key("test/images_per_class", "those images, per class", "test"),
    Key("test_last/images", "images test_last/* was measured on", "test"),
    Key("test_last/images_per_class", "those images, per class", "test"),
    Key("best_checkpoint", "the checkpoint test/* was measured on", "test"),
    Key("wandb_dir", "the offline wandb run's directory", "start"),
    # clocks and interruptions
    Key("invocations", "how many times this run directory was started", "start"),
    Key("started_at", "Unix time this invocation started", "start"),
    Key("ended_at", "Unix time this invocation last wrote the record", "checkpoint/fit/failure"),
    Key("wall_time_s", "wall time over every invocation (a killed one counts until its last checkpoint)",
        "checkpoint/fit/failure"),
    Key("wall_time_s/last", "wall time of this invocation", "checkpoint/fit/failure"),
    Key("interruptions", "every stop the run resumed from: by what (a signal, or an unclean stop found by the next "
        "invocation), at which step, from which checkpoint", "start/signal"),
    Key("interrupted", "what stopped this invocation (SIGTERM, the SLURM time limit)", "signal"),
    Key("interrupted_at_step", "the step it stopped at", "signal"),
    Key("resume_from", "the checkpoint a re-run resumes from", "signal"),
)


def unknown(keys: Iterable[str]) -> list[str]:
    """The keys no schema entry describes."""
    patterns = [k.pattern() for k in SCHEMA]
    return [key for key in keys if not any(p.match(key) for p in patterns)]


def check(keys: Iterable[str]) -> None:
    bad = unknown(keys)
    if bad:
        raise KeyError(f"results.json keys not in models/train/schema.py: {', '.join(bad)}")


def record_table() -> str:
    """The README's "What every run records" table."""
    lines = ["| key | meaning | written |", "|---|---|---|"]
    lines += [f"| `{k.name}` | {k.meaning} | {k.when.replace('/', ', ')} |" for k in SCHEMA]
    return "\n".join(lines)
