"""`make regen` (models/analysis/regen.py): every generated file of the checkout is what its code generates now."""

from __future__ import annotations

import pytest

from helpers.runs import REPO
from models.analysis.regen import GENERATORS, between


@pytest.mark.parametrize("name", list(GENERATORS))
def test_generated_files_are_current(name: str) -> None:
    stale = [str(p.relative_to(REPO)) for p, text in GENERATORS[name]().items()
             if not p.is_file() or p.read_text() != text]
    assert stale == [], f"{name}: {', '.join(stale)} stale: run `make regen` and commit the result"


def test_no_model_config_without_a_preset() -> None:
    from models.analysis.regen import model_configs

    assert sorted((REPO / "configs" / "model").glob("*.yaml")) == sorted(model_configs())


def test_between_replaces_only_the_marked_part() -> None:
    text = "a\n<!-- x:begin (made by y) -->\nold\n<!-- x:end -->\nb\n"
    assert between(text, "x", "new") == "a\n<!-- x:begin (made by y) -->\nnew\n<!-- x:end -->\nb\n"
    with pytest.raises(KeyError, match="x:begin"):
        between("no markers", "x", "new")
