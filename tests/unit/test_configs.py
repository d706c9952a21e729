"""Hydra composition of configs/train.yaml: every override name users type, every group option, and the config
groups' keys matching what they are passed to (lightning.Trainer kwargs, datamodule constructors)."""

from __future__ import annotations

import inspect

import hydra
import lightning.pytorch as pl
import pytest
from omegaconf import OmegaConf

import models
from helpers.runs import REPO, compose_train

CONFIGS = REPO / "configs"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_defaults() -> None:
    cfg = compose_train([])
    assert cfg.model.name == "resnet20" and cfg.data._target_.endswith("DigitsDataModule")
    assert cfg.trainer.accelerator == "cpu" and "wandb" in cfg.logger
    assert cfg.seed == 0 and cfg.experiment == "default" and cfg.checkpoint.every_n_steps > 0
    assert cfg.model.num_classes is None  # taken from the dataset at run time


def test_every_user_override_name() -> None:
    cfg = compose_train([
        "seed=7", "model=resnet56", "model.head=fc", "model.widths=[8,16,32]", "data=cifar10", "data.root=/x/cifar",
        "data.download=true", "data.verify=false", "data.batch_size=64", "data.image_size=40", "data.num_workers=3",
        "trainer=gpu", "trainer.max_epochs=5", "trainer.devices=2", "trainer.deterministic=true",
        "trainer.precision=16-mixed", "trainer.gradient_clip_val=1.0", "logger=csv", "hydra.run.dir=/tmp/somewhere",
    ])
    assert cfg.seed == 7 and cfg.model.name == "resnet56" and cfg.model.head == "fc"
    assert list(cfg.model.widths) == [8, 16, 32]
    assert (cfg.data.name, cfg.data.root, cfg.data.download, cfg.data.verify) == ("cifar10", "/x/cifar", True, False)
    assert (cfg.data.batch_size, cfg.data.image_size, cfg.data.num_workers) == (64, 40, 3)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "16-mixed" and cfg.trainer.devices == 2
    assert cfg.trainer.max_epochs == 5 and cfg.trainer.deterministic is True and cfg.trainer.gradient_clip_val == 1.0
    assert list(cfg.logger) == ["csv"]


@pytest.mark.parametrize("logger, keys", [("wandb", ["wandb"]), ("csv", ["csv"]), ("none", [])])
def test_logger_options(logger: str, keys: list[str]) -> None:
    assert list(compose_train([f"logger={logger}"]).logger or {}) == keys


def test_ddp_trainer_and_cpu_gloo_override() -> None:
    cfg = compose_train(["trainer=ddp", "trainer.accelerator=cpu"])
    assert (cfg.trainer.strategy, cfg.trainer.devices, cfg.trainer.accelerator) == ("ddp", 2, "cpu")
    cfg = compose_train(["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"])
    assert cfg.trainer.strategy == "ddp"


@pytest.mark.parametrize("trainer", _options("trainer"))
def test_trainer_configs_are_trainer_kwargs(trainer: str) -> None:
    """`trainer:` maps 1:1 onto lightning.Trainer(**cfg.trainer)."""
    cfg = compose_train([f"trainer={trainer}"])
    accepted = set(inspect.signature(pl.Trainer.__init__).parameters)
    assert set(cfg.trainer) <= accepted, set(cfg.trainer) - accepted


@pytest.mark.parametrize("data", _options("data"))
def test_data_configs_match_their_datamodule(data: str) -> None:
    cfg = compose_train([f"data={data}"])
    cls = hydra.utils.get_class(cfg.data._target_)
    accepted = set(inspect.signature(cls.__init__).parameters)
    assert set(cfg.data) - {"_target_"} <= accepted, set(cfg.data) - accepted
    for key in ("batch_size", "image_size", "num_workers", "seed"):
        assert key in cfg.data


@pytest.mark.parametrize("preset", models.list_presets())
def test_every_model_preset_composes(preset: str) -> None:
    cfg = compose_train([f"model={preset}"])
    knobs = OmegaConf.to_container(cfg.model)
    assert knobs.pop("name") == preset
    knobs.pop("num_classes")
    assert models.get_spec({"name": preset, **knobs}) == models.get_preset(preset).spec.replace(
        **{k: v for k, v in knobs.items() if k not in ("depths", "widths", "head_hidden")})


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiments_compose(experiment: str) -> None:
    cfg = compose_train([f"experiment={experiment}"])
    assert cfg.experiment == experiment
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves (hydra:* keys aside)


def test_he_et_al_cifar10_resnet20_recipe() -> None:
    cfg = compose_train(["experiment=cifar10_resnet20"])
    assert cfg.model.name == "resnet20" and cfg.data.name == "cifar10" and cfg.data.batch_size == 128
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    assert cfg.trainer.max_steps == 64000 and cfg.trainer.max_epochs == 182
    assert cfg.sched.name == "multistep"
    assert [round(m * cfg.trainer.max_steps) for m in cfg.sched.milestones] == [32000, 48000]
    assert -(-45000 // 128) * 182 >= 64000  # 182 epochs of 45k/128 cover the 64k iterations


def test_experiment_values_override_train_yaml() -> None:
    cfg = compose_train(["experiment=cifar10_vgg16", "optim.lr=0.3"])
    assert cfg.model.name == "vgg16_cifar" and cfg.sched.name == "multistep" and cfg.sched.warmup_steps == 500
    assert cfg.optim.lr == 0.3  # the command line wins over the recipe


def test_run_dir_pattern() -> None:
    text = (CONFIGS / "train.yaml").read_text()
    assert "runs/${experiment}/${now:" in text


def test_preflight_checks_need_no_torch() -> None:
    """scripts/train.py reports a bad trainer/optim/model value before torch loads: the checks import none of it."""
    import subprocess
    import sys

    code = ("import sys; from models.train.preflight import preflight; "
            "print(sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-0.1", "optim.lr=-0.1 is not valid: use a number > 0"),
    ("model.head=mlp", "model.head='mlp' is not valid"),
    ("trainer.min_epochs=5", "trainer.min_epochs=5 > trainer.max_epochs=1"),
    ("data.image_size=2", "data.image_size=2 is too small"),
])
def test_preflight_raises_what_train_raises(override: str, message: str) -> None:
    from models.train.preflight import preflight

    cfg = compose_train(["trainer.max_epochs=1", override])
    with pytest.raises(models.ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        preflight(cfg)
    preflight(compose_train(["trainer.max_epochs=1"]))  # the defaults pass


def test_graph_modes_refuse_gradient_accumulation_where_they_make_graphs() -> None:
    from models.train.graphs import check_graph_settings

    check_graph_settings("auto", {"accumulate_grad_batches": 2}, on_cuda=False)  # auto on a CPU: eager, fine
    check_graph_settings("default", {"accumulate_grad_batches": 2}, on_cuda=True)  # no graphs
    for value, on_cuda in (("auto", True), ("reduce-overhead", False), ("max-autotune", True)):
        with pytest.raises(models.ConfigError, match=rf"compile={value} replays CUDA graphs"):
            check_graph_settings(value, {"accumulate_grad_batches": 2}, on_cuda=on_cuda)
