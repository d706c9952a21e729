"""torch.compile and CUDA graphs for a run: which mode (`compile=`), and what the compiler did (recorded).

`compile`: false | true (= default) | default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs | auto.
`auto` (the project default) is `reduce-overhead` on a CUDA GPU — Inductor kernels replayed as CUDA graphs, which is
what small networks need: a ResNet-20 step is thousands of tiny kernels the CPU cannot launch fast enough — and off
(eager) on a CPU, where compiling costs minutes and graphs do not exist. Only the network is compiled (in place:
checkpoint keys stay those of the plain network); the loss, metrics and optimizer stay eager, so logging and the
learning-rate schedule never force a recompile. Every shape a graph sees is static: training drops the last partial
batch, evaluation pads its last batch and excludes the padding from every metric (`data.device.DeviceLoader`).

`CompileWatch` counts, around fit and test, the graphs compiled, the recompilations (guard failures), the graph
breaks and the CUDA-graph skips, records them (`compile/*` in results.json) and warns once, with the compiler's
reason, when graphs were skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from models.errors import ConfigError

log = logging.getLogger("models.train")
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPH_MODES = ("reduce-overhead", "max-autotune")  # Inductor wraps these in CUDA graphs (on a CUDA device)


def compile_mode(value: Any, on_cuda: bool) -> str | None:
    """The torch.compile mode of `compile=<value>` (None: eager)."""
    if value is None or value is False or value == "false":
        return None
    if value is True or value == "true":
        return "default"
    if value == "auto":
        return "reduce-overhead" if on_cuda else None
    if value not in MODES:
        raise ConfigError(f"compile={value!r} is not valid: choose one of false, true, auto, {', '.join(MODES)}")
    return str(value)


def check_graph_settings(value: Any, trainer: dict[str, Any], on_cuda: bool) -> None:
    """A graph mode (reduce-overhead, max-autotune) replays one captured step: the next replay overwrites the
    gradients its backward produced, so they cannot be accumulated over batches. An explicit graph mode is refused
    on every device (a command that passes on a CPU must not fail, or train wrongly, on a GPU); `auto` where it
    means graphs (a CUDA device)."""
    mode = compile_mode(value, on_cuda)
    accumulate = trainer.get("accumulate_grad_batches", 1)
    if mode in GRAPH_MODES and isinstance(accumulate, int) and accumulate > 1:
        raise ConfigError(f"compile={value} replays CUDA graphs, whose next replay overwrites the gradients being "
                          f"accumulated (trainer.accumulate_grad_batches={accumulate}): set "
                          "trainer.accumulate_grad_batches=1 (a bigger data.batch_size) or compile=default")


def uses_cuda_graphs(mode: str | None, on_cuda: bool) -> bool:
    return on_cuda and mode in GRAPH_MODES


class _SkipReasons(logging.Handler):
    """Keeps the messages Inductor logs when it skips CUDA graphs ("skipping cudagraphs due to ...")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "cudagraph" in message.lower():  # perf hints say other things too (fallback kernels, padding)
            self.reasons.append(message)


# Where Inductor says why it skipped CUDA graphs: its `cudagraphs` artifact logger in recent torch, its `perf_hints`
# loggers in others (2.11 among them). Each is an artifact logger, off unless TORCH_LOGS turns it on: the watch turns
# it on for its block (records kept by the watch only, not propagated to the console) and puts it back.
SKIP_LOGGERS = ("torch._inductor.cudagraph_utils.__cudagraphs", "torch._inductor.cudagraph_utils.__perf_hints",
                "torch._inductor.cudagraph_trees.__perf_hints", "torch._inductor.compile_fx.__perf_hints",
                "torch._inductor.output_code.__perf_hints", "torch._inductor.graph.__perf_hints")
NO_REASON = "Inductor counted a skip without saying why (run with TORCH_LOGS=perf_hints,cudagraphs to see it)"


class CompileWatch:
    """What the compiler did during a block (fit, test): graphs, recompiles, graph breaks, CUDA-graph skips."""

    def __init__(self, mode: str | None, on_cuda: bool) -> None:
        self.mode, self.on_cuda = mode, on_cuda
        self.handler = _SkipReasons()
        self._saved: dict[str, tuple[int, bool, bool]] = {}

    def _counts(self) -> dict[str, int]:
        from torch._dynamo.utils import counters, guard_failures

        return {"graphs": int(counters["stats"]["unique_graphs"]),
                "recompiles": sum(len(v) for v in guard_failures.values()),
                "graph_breaks": int(sum(counters["graph_break"].values())),
                "cudagraph_skips": int(counters["inductor"]["cudagraph_skips"])}

    def __enter__(self) -> CompileWatch:  # re-entered for each block (fit, test): counts add up from the first
        if self.mode:
            if not hasattr(self, "before"):
                self.before = self._counts()
            for name in SKIP_LOGGERS:
                logger = logging.getLogger(name)
                self._saved[name] = (logger.level, logger.disabled, logger.propagate)
                logger.setLevel(logging.DEBUG)
                logger.disabled, logger.propagate = False, False
                logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.mode:
            for name, (level, disabled, propagate) in self._saved.items():
                logger = logging.getLogger(name)
                logger.removeHandler(self.handler)
                logger.setLevel(level)
                logger.disabled, logger.propagate = disabled, propagate
            self.after = self._counts()

    def summary(self) -> dict[str, Any]:
        """compile/* record keys; warns once when CUDA graphs were skipped, saying why."""
        if not self.mode or not hasattr(self, "after"):
            return {"compile": False}
        out: dict[str, Any] = {"compile": self.mode,
                               **{f"compile/{k}": self.after[k] - self.before[k] for k in self.after}}
        if self.mode in GRAPH_MODES:
            reasons = list(dict.fromkeys(self.handler.reasons)) or (
                ["CUDA graphs need a CUDA device: this run compiled for the CPU"] if not self.on_cuda else [])
            if out["compile/cudagraph_skips"] and not reasons:
                reasons = [NO_REASON]
            if out["compile/cudagraph_skips"] or reasons:
                out["compile/cudagraph_skip_reasons"] = "; ".join(reasons)
                log.warning(f"warning: compile={self.mode} ran without CUDA graphs for "
                            f"{out['compile/cudagraph_skips']} graph(s): {reasons[0]}")
        return out
