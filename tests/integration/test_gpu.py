"""On a CUDA GPU: the checks of `make gpu-check` as tests (skipped without one), and training memory's prediction
against what CUDA really allocated. Without CUDA, `make gpu-check` says so in one line and exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.runs import run_script

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_check_refuses_cleanly_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    proc = run_script("gpu_check", [])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "gpu-check: no CUDA device on this machine (torch.cuda.is_available() is False): run it on a GPU box"]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["graphs", "resume", "padding", "packing", "host", "speed"])
def test_gpu_check(name: str, tmp_path: Path) -> None:
    from models.bench.gpu_check import CHECKS

    ok, detail = CHECKS[name](tmp_path)
    assert ok, detail


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("model, size, batch, precision", [("resnet20", 32, 256, "32"),
                                                          ("resnet18", 224, 32, "bf16-mixed")])
def test_predicted_training_memory_matches_cuda(model: str, size: int, batch: int, precision: str) -> None:
    """models/memory.py's predicted peak of a training step against torch.cuda.max_memory_allocated of a real SGD
    step (after one step has created the optimizer state): within 25% (allocator rounding, cuDNN workspaces)."""
    import models
    from models.memory import profile_memory

    device = torch.device("cuda")
    net = models.build(model, num_classes=10).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision != "32")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()  # weights, momentum, gradients, saved activations, transients: everything but the batch itself
    measured = torch.cuda.max_memory_allocated() - x.nbytes - y.nbytes
    predicted = profile_memory(net, size).peak(batch, precision)
    assert predicted == pytest.approx(measured, rel=0.25), (predicted, measured)
