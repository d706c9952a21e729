"""`make regen`: every generated file of the repository, produced again by the checkout's own code.

Generated are: the model configs (configs/model/*.yaml, from NetSpec and the presets), the explain roadmap grids
(configs/ablation/roadmap*.yaml and their variants), the tables of docs/config_keys.md (keys and knobs),
docs/dependencies.md and docs/bad_inputs.md (from their tests' lists), the committed result reports
(docs/results/<grid>/table.md ... from the records under docs/results/<grid>/runs) and the generated sections of
the README and docs pages (between `<!-- name:begin -->` and `<!-- name:end -->` markers, readme.MARKED).
`outputs()` returns all of them as text without writing anything: tests/unit/test_regen.py compares them with the
committed files and names `make regen`; `regen()` writes them. Measured outputs (benchmarks, measured times) are
not here: they come from their commands.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# The committed roadmap grids: (grid, A, B, the grid file it extends, input size or None for A's designed size).
ROADMAPS: tuple[tuple[str, Any, Any, str, int | None], ...] = (
    ("roadmap", "vgg16", "resnet34", "_imagenet", None),
    ("roadmap_cifar", "vgg16_cifar", "resnet20", "_cifar", None),
    ("roadmap_cifar_tiny", {"name": "vgg11_cifar", "widths": [16, 32, 64, 64, 64], "label": "narrow_vgg11_cifar"},
     "resnet20", "_roadmap_tiny", None),
    ("roadmap_tiny", {"name": "vgg11", "head_hidden": [64, 64], "label": "vgg11_small_head"}, "resnet18",
     "_roadmap_tiny", 32),
)


def between(text: str, name: str, body: str, source: str = "") -> str:
    """`text` with the part between `<!-- name:begin ... -->` and `<!-- name:end -->` replaced by `body`."""
    begin, end = f"<!-- {name}:begin", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        raise KeyError(f"markers {begin} ... {end} not found")
    head, rest = text.split(begin, 1)
    marker = rest.split("-->", 1)[0]
    return f"{head}{begin}{marker}-->\n{body.strip()}\n{end}{rest.split(end, 1)[1]}"


def _test_module(relative: str) -> Any:
    """A test module of this checkout (the doc tables its lists generate), imported with tests/ on the path."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        spec = importlib.util.spec_from_file_location(f"_regen_{Path(relative).stem}", REPO / relative)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = module  # type: ignore[union-attr]  # (its dataclasses look themselves up there)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    finally:
        sys.path.remove(str(REPO / "tests"))


# ------------------------------------------------------------------ the generators: path -> text
def model_configs() -> dict[Path, str]:
    from models.presets import preset_texts

    return {REPO / "configs" / "model" / name: text for name, text in preset_texts().items()}


def roadmap_grids() -> dict[Path, str]:
    from models.analysis.explain import explain
    from models.analysis.explain_grid import write_grid

    out: dict[Path, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ablation" / "variant").mkdir(parents=True)
        for grid, a, b, base, size in ROADMAPS:
            for path in write_grid(explain(a, b, input_size=size), grid, base, a, config_dir=Path(tmp)):
                out[REPO / "configs" / path.relative_to(tmp)] = path.read_text()
    return out


def key_docs() -> dict[Path, str]:
    from models.spec import knob_table
    from models.train.keys import key_table

    doc = REPO / "docs" / "config_keys.md"
    text = between(doc.read_text(), "keys", key_table())
    return {doc: between(text, "knobs", knob_table())}


def test_docs() -> dict[Path, str]:
    out = {}
    for relative, doc, name in (("tests/unit/test_dependencies.py", "dependencies.md", "private"),
                                ("tests/reliability/test_bad_inputs.py", "bad_inputs.md", "catalogue")):
        path = REPO / "docs" / doc
        out[path] = between(path.read_text(), name, _test_module(relative).render_table())
    return out


def result_reports() -> dict[Path, str]:
    """docs/results/<grid>/table.md of every grid whose records are committed (the figures are written by regen()
    too, but only the tables are compared: PNG bytes vary with matplotlib)."""
    from models.analysis.report import report

    out = {}
    for runs in sorted((REPO / "docs" / "results").glob("*/runs")):
        with tempfile.TemporaryDirectory() as tmp:
            table, _ = report(str(runs), out=tmp, source=str(runs.relative_to(REPO)))
        out[runs.parent / "table.md"] = table
    return out


def marked_sections() -> dict[Path, str]:
    """The README and the docs pages with their generated sections filled (models/analysis/readme.py)."""
    from models.analysis.readme import MARKED

    out = {}
    for relative, sections in MARKED.items():
        path = REPO / relative
        text = path.read_text()
        for name, body in sections().items():
            text = between(text, name, body)
        out[path] = text
    return out


GENERATORS: dict[str, Callable[[], dict[Path, str]]] = {
    "model configs": model_configs, "roadmap grids": roadmap_grids, "config keys doc": key_docs,
    "dependency and bad-input docs": test_docs, "result reports": result_reports,
    "README and docs sections": marked_sections}


def outputs() -> dict[Path, str]:
    """Every generated text file, as the checkout's code makes it now."""
    out: dict[Path, str] = {}
    for generate in GENERATORS.values():
        out.update(generate())
    return out


def stale() -> list[Path]:
    """The committed files that differ from what the code generates (missing ones included)."""
    return [p for p, text in outputs().items() if not p.is_file() or p.read_text() != text]


def regen() -> list[Path]:
    """Write every generated file (result reports with their figures); returns what changed."""
    from models.analysis.report import report

    changed = []
    for generate in GENERATORS.values():  # in order, each written before the next runs: a new knob's _knobs.yaml
        for path, text in generate().items():  # must exist before the grids that set it can be composed
            if not path.is_file() or path.read_text() != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                changed.append(path)
    for runs in sorted((REPO / "docs" / "results").glob("*/runs")):
        report(str(runs), out=runs.parent, source=str(runs.relative_to(REPO)))  # the figures beside the table
    for stray in sorted((REPO / "configs" / "model").glob("*.yaml")):
        if stray not in model_configs():  # a preset that was removed
            stray.unlink()
            changed.append(stray)
    return changed
