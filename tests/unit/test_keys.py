"""The typed schema of every configuration key (models/train/keys.py): it covers every key the configs define, every
shipped config passes it, every key refuses a value of the wrong type in one line naming the key and what it takes,
and the sections that mirror a library's signature still match that library."""

from __future__ import annotations

import copy
import functools
import inspect
import sys
import typing
from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from data.keys import DECLARED, IMAGENETTE_SIZES, names
from helpers.runs import REPO, compose_train
from models.errors import ConfigError
from models.train import keys
from models.train.keys import check_keys, leaf_keys
from models.utils.declare import accepts

GROUPS = ("data", "model", "trainer", "logger", "experiment")
FOLDER = ["data=imagefolder", "data.root=/nowhere"]
CIFAR = ["data=cifar10"]


def shipped_configs() -> list[list[str]]:
    """Every option of every config group, and every ablation grid."""
    combos = [[]] + [[f"{g}={f.stem}"] for g in GROUPS for f in sorted((REPO / "configs" / g).glob("*.yaml"))]
    return combos + [[f"+ablation={f.stem}"] for f in sorted((REPO / "configs" / "ablation").glob("[!_]*.yaml"))]


def flat_keys(node: object, prefix: str = "") -> set[str]:
    if isinstance(node, dict):  # an empty group (logger=none) holds no key
        return {k for key, value in node.items() for k in flat_keys(value, f"{prefix}{key}.")}
    return {prefix[:-1]}


@pytest.fixture(scope="module")
def composed() -> list:
    return [compose_train(c) for c in shipped_configs()]


def test_every_shipped_config_passes_the_schema(composed: list) -> None:
    for cfg in composed:
        check_keys(cfg)


def test_the_schema_types_every_key_the_configs_define(composed: list) -> None:
    typed = set(leaf_keys())
    seen = set().union(*(flat_keys(OmegaConf.to_container(c)) for c in composed))
    untyped = {k for k in seen - typed if not k.startswith(("logger.csv.", "logger.wandb.settings."))}
    assert untyped == set(), f"keys without a type in models/train/keys.py: {sorted(untyped)}"
    assert len(typed) > 110


def _setting(key: str) -> list[str]:
    """The dataset whose constructor takes a data.* key (the digits default takes only some)."""
    if not key.startswith("data.") or key in ("data._target_",):
        return []
    name = key.split(".", 1)[1]
    for target, group in (("data.digits.DigitsDataModule", []), ("data.cifar.CIFARDataModule", CIFAR),
                          ("data.folder.ImageFolderDataModule", FOLDER)):
        if name in names(DECLARED[target]):
            return group
    raise AssertionError(f"{key}: no datamodule takes it")


def wrong_value(hint: object) -> object:
    """A value (as YAML or the command line give it) that a key typed `hint` refuses."""
    for value in ("nonsense", [1, 2], {"a": 1}, True):
        if not accepts(hint, value):
            return value
    raise AssertionError(f"{hint} accepts anything")


@functools.cache
def _composed(setting: tuple[str, ...]) -> object:
    return compose_train(list(setting))


# _target_ keys name a class: a wrong one is Hydra's instantiate error (data/__init__.py words it)
@pytest.mark.parametrize("key", sorted(k for k in leaf_keys() if not k.endswith("._target_")))
def test_every_key_refuses_a_wrong_value_in_one_line_naming_it(key: str) -> None:
    hint = leaf_keys()[key]
    cfg = copy.deepcopy(_composed(tuple(_setting(key))))
    OmegaConf.set_struct(cfg, False)
    OmegaConf.update(cfg, key, wrong_value(hint), force_add=True)
    with pytest.raises(ConfigError) as error:
        check_keys(cfg)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{key}="), message
    assert " is not valid: use " in message or " is not valid: choose one of " in message, message


@pytest.mark.parametrize(("override", "message"), [
    ("seed=-1", "seed=-1 is not valid: use an integer in [0, 4294967295]"),
    ("optim.momentum=1.0", "optim.momentum=1.0 is not valid: use a number in [0, 1)"),
    ("sched.pct_start=0", "sched.pct_start=0 is not valid: use a number in (0, 1)"),
    ("label_smoothing=1", "label_smoothing=1 is not valid: use a number in [0, 1)"),
    ("trainer.devices=0", "trainer.devices=0 is not valid: use an integer >= 1, -1, auto, device indices such as '0,1' "
                          "or a list of integers >= 0"),
    ("trainer.limit_train_batches=1.5",
     "trainer.limit_train_batches=1.5 is not valid: use an integer >= 0, a number in [0, 1] or null"),
    ("trainer.max_time=tomorrow",
     "trainer.max_time='tomorrow' is not valid: use a time DD:HH:MM:SS (e.g. 00:12:00:00), a group of keys or null"),
    ("compile=maybe", "compile='maybe' is not valid: choose one of true, false, auto, default, reduce-overhead, "
                      "max-autotune, max-autotune-no-cudagraphs"),
    ("optim.betas=[0.9]", "optim.betas=[0.9] is not valid: use a list of 2 numbers in [0, 1)"),
    ("logger.wandb.offline=maybe", "logger.wandb.offline='maybe' is not valid: choose one of true, false, null"),
    ("+data.cache=true", "data.cache is not a setting of this dataset (data._target_=data.digits.DigitsDataModule): "
                         "drop it; it takes augment, batch_size, device_resident, image_size, num_workers, seed, "
                         "test_size, val_size"),
    ("+foo=1", "unknown key foo: check the spelling (python scripts/train.py --cfg job lists the keys)"),
    ("+optim.lrr=1", "unknown key optim.lrr: check the spelling (python scripts/train.py --cfg job lists the keys)"),
])
def test_ranges_choices_and_unknown_keys(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_keys(compose_train([override]))
    assert str(error.value) == message


def test_a_datamodule_of_your_own_takes_its_own_keys() -> None:
    check_keys(compose_train(["data._target_=my_data.Module", "+data.shards=4"]))
    with pytest.raises(ConfigError, match=r"^data.batch_size=0 is not valid: use an integer >= 1$"):
        check_keys(compose_train(["data._target_=my_data.Module", "data.batch_size=0"]))


def test_values_a_user_types_are_accepted() -> None:
    for override in ("tags=[cifar,2024]", "run_dir=2024", "trainer.devices='0,1'", "trainer.devices=-1",
                     "trainer.devices=[0,1]", "trainer.devices=auto",
                     "trainer.precision=bf16-mixed", "trainer.precision=16", "trainer.max_time=00:12:00:00",
                     "trainer.limit_train_batches=0.25", "trainer.limit_train_batches=5", "compile=true",
                     "compile=reduce-overhead", "optim.lr=1", "trainer.max_epochs=-1", "data.num_workers=4",
                     "trainer.val_check_interval=0.5", "trainer.deterministic=warn", "checkpoint.monitor=val/acc_top5"):
        check_keys(compose_train([override]))


# ------------------------------------------------------------------ the library signatures the schema mirrors
def _params(fn: object, *dropped: str) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self", *dropped)]


def test_trainer_section_is_lightnings_trainer_signature() -> None:
    """A Lightning release that adds, renames or drops a Trainer argument fails here (pyproject bounds lightning)."""
    import lightning.pytorch as pl

    run_owned = ("logger", "callbacks", "plugins", "default_root_dir")
    assert [f.name for f in fields(keys.Trainer)] == _params(pl.Trainer.__init__, *run_owned)
    hint = inspect.signature(pl.Trainer.__init__).parameters["precision"].annotation
    lightning_precisions = {a for arm in typing.get_args(hint) for a in typing.get_args(arm)}
    assert set(typing.get_args(keys.PRECISIONS)) == lightning_precisions


def test_data_keys_are_the_datamodule_constructors() -> None:
    """Each datamodule's declaration (data/keys.py) is its constructor: the same keys, the same defaults."""
    from dataclasses import fields as dc_fields

    from hydra.utils import get_class
    from torchvision.datasets import Imagenette

    for target, declared in DECLARED.items():
        params = inspect.signature(get_class(target).__init__).parameters
        assert sorted(names(declared)) == sorted(_params(get_class(target).__init__, "pad_eval")), target
        assert {f.name: f.default for f in dc_fields(declared)} == {n: params[n].default for n in names(declared)}
    assert set(IMAGENETTE_SIZES) == set(Imagenette._ARCHIVES)


def test_model_optim_and_sched_sections_are_the_classes_that_take_them() -> None:
    """Declared once: the schema's sections ARE the classes that take the values (no copy to keep in step)."""
    from models.spec import knob_names
    from models.train.optim import LRSchedule, OptimConfig, SchedSettings

    assert [f.name for f in fields(keys.Model)] == ["name", *knob_names()]
    assert keys.Optim is OptimConfig and keys.Sched is SchedSettings and issubclass(LRSchedule, SchedSettings)


def test_train_yaml_lists_the_top_level_keys_in_schema_order() -> None:
    text = (REPO / "configs" / "train.yaml").read_text()
    top = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha() and ":" in line]
    top = [k for k in top if k not in ("defaults", "hydra")]
    schema = [f.name for f in fields(keys.Train) if f.name not in ("model", "data", "trainer", "logger")]
    assert top == schema


def test_checked_before_torch_loads(tmp_path: Path) -> None:
    """The walk imports nothing heavy: scripts/train.py runs it before torch (models.train.preflight)."""
    import subprocess

    code = ("import sys; from models.train.keys import check_keys; from models.utils.hydra import compose; "
            "check_keys(compose([])); print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
