"""The README's generated sections (`<!-- name:begin -->` ... `<!-- name:end -->`), each from the accounting code or
from committed records; `make regen` writes them (models/analysis/regen.py) and a test keeps them current."""

from __future__ import annotations

from collections.abc import Callable

EXPLAINED = (("vgg16_resnet34", "vgg16", "resnet34"), ("vgg16_cifar_resnet20", "vgg16_cifar", "resnet20"))


def explanation(a: str, b: str) -> str:
    """Why B costs less than A, choice by choice: the roadmap, the Shapley attribution and the note."""
    from models.analysis.explain import explain
    from models.analysis.explain_report import attribution_markdown, note, roadmap_markdown

    e = explain(a, b)
    return "\n\n".join((roadmap_markdown(e), attribution_markdown(e), note(e)))


def sections() -> dict[str, str]:
    """Marker name -> its generated Markdown."""
    makers: dict[str, Callable[[], str]] = {f"explain:{key}": (lambda a=a, b=b: explanation(a, b))
                                            for key, a, b in EXPLAINED}
    return {name: make() for name, make in makers.items()}
