"""The minimal hand-written training loop the project is measured against, and the data pipeline alone.

`Minimal`: the same network (same spec, seed, channels_last / autocast settings), the same optimizer and parameter
groups, batches from an identical DeviceLoader over the same in-memory uint8 split:
`zero_grad; forward; cross_entropy; backward; step`. No scheduler, metrics, logging or divergence check. It is
EAGER whatever the case compiles (so "ratio to the eager loop" means what it says); `graphs=True` is the second
reference: the same loop compiled with CUDA graphs (reduce-overhead), the real limit for small networks on a GPU.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from models.bench.case import Case


class Minimal:
    """The hand-written loop: same network/spec, optimizer settings, autocast and memory format as the project."""

    def __init__(self, cfg: Any, case: Case, device: torch.device, graphs: bool = False) -> None:
        """`graphs`: the same loop with the network compiled as CUDA graphs (torch.compile mode="reduce-overhead",
        one `cudagraph_mark_step_begin` per step) — the real limit for small networks on a GPU."""
        from omegaconf import OmegaConf

        from data import build_datamodule
        from models.network import Net
        from models.train.build import build_spec
        from models.train.optim import OptimConfig, make_optimizer

        torch.manual_seed(int(cfg.seed))
        dm = build_datamodule(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        _, spec = build_spec(cfg.model, dm)
        self.spec = spec
        net = Net(spec).to(device)
        if case.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if graphs:  # the eager reference loop is always eager, whatever the case compiles (its ratio means that)
            net.compile(mode="reduce-overhead")
        self.graphs = graphs and device.type == "cuda"
        self.opt = make_optimizer(net, OptimConfig(**OmegaConf.to_container(cfg.optim, resolve=True)),
                                  fused=device.type == "cuda")
        self.net, self.case, self.device, self.dm = net, case, device, dm
        if device.type == "cuda" and cfg.trainer.get("benchmark"):
            torch.backends.cudnn.benchmark = True
        self.train_loader = self._loader(dm, "train")
        self.eval_loader = self._loader(dm, "test")
        self._it = iter(self.train_loader)
        self.steps_done = 0
        self.spans: list[tuple[float, float]] = []  # (start, end) of every call of train_steps
        self.last_loss: float | None = None

    def compiled(self) -> bool:
        """Whether the loop's network runs compiled (torch's nn.Module.compile sets `_compiled_call_impl`)."""
        return self.net._compiled_call_impl is not None

    def _loader(self, dm: Any, split: str) -> Any:
        from data.device import DeviceLoader

        loader = getattr(dm, f"{split}_dataloader")()  # standalone: a CPU DeviceLoader (rank 0 of 1)
        if not isinstance(loader, DeviceLoader):
            raise RuntimeError(f"expected a DeviceLoader for {split}, got {type(loader).__name__}")
        return loader.to(self.device)  # the same loader on the accelerator (as under a Trainer)

    def _autocast(self) -> Any:
        p = self.case.precision
        if p.startswith("bf16"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if p.startswith("16"):
            return torch.autocast(self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def _next(self, it_attr: str, loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(getattr(self, it_attr))
        except StopIteration:
            setattr(self, it_attr, iter(loader))
            return next(getattr(self, it_attr))

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def train_steps(self, n: int) -> float:
        """images/s over n steps (the device is synchronised at both ends)."""
        self.net.train()
        images, t0 = 0, self._sync()
        for _ in range(n):
            x, y = self._next("_it", self.train_loader)
            if self.case.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.opt.zero_grad(set_to_none=True)
            if self.graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with self._autocast():
                loss = F.cross_entropy(self.net(x), y)
            loss.backward()
            self.opt.step()
            images += len(y)
        t1 = self._sync()
        self.steps_done += n
        self.spans.append((t0, t1))
        self.last_loss = float(loss.detach()) if n else self.last_loss
        return images / (t1 - t0)

    @torch.inference_mode()
    def infer(self, batches: int) -> float:
        self.net.eval()
        it = iter(self.eval_loader)
        x, _ = next(it)
        with self._autocast():
            self.net(x.contiguous(memory_format=torch.channels_last) if self.case.channels_last else x)  # warm-up
        images, t0 = 0, self._sync()
        for _ in range(batches):
            try:
                x, y = next(it)
            except StopIteration:
                it = iter(self.eval_loader)
                x, y = next(it)
            if self.case.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                self.net(x)
            images += len(y)
        return images / (self._sync() - t0)


def pipeline_rate(loader: Any, batches: int, repeats: int, device: torch.device) -> float:
    """Median images/s of the loader alone (augmented, normalised batches on the device)."""
    it = iter(loader)
    next(it)
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        for _ in range(batches):
            try:
                x, _ = next(it)
            except StopIteration:
                it = iter(loader)
                x, _ = next(it)
            n += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)
