"""Named ablation grids and launcher configs: composition (Hydra compose API), job counts, run-directory names."""

from __future__ import annotations

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from models.analysis.ablation import ablation_config, grid, job_identity, list_ablations, noise_keys, parse_overrides
from models.errors import ConfigError
from models.presets import get_spec

TWINS = ("_tiny", "_cpu", "_gpu")  # a full grid's smaller twins: a laptop minute, CPU-scale real data, a GPU lease
NAMES = list_ablations()


def declared_jobs(name: str) -> int:
    """Jobs a grid file declares: the product of its sweep lists' lengths (counted here from the composed
    `hydra.sweeper.params`, independently of `grid()`, which expands them as Hydra's sweeper does)."""
    count = 1
    for values in ablation_config(name).hydra.sweeper.params.values():
        depth, items = 0, 1
        for ch in str(values):
            depth += 1 if ch in "[(" else -1 if ch in ")]" else 0
            items += ch == "," and depth == 0
        count *= items
    return count


def test_every_full_ablation_has_a_tiny_twin_and_every_twin_a_full_grid() -> None:
    full = [n for n in NAMES if not n.endswith(TWINS)]
    assert full and all(f"{n}_tiny" in NAMES for n in full)
    assert all(n.rsplit("_", 1)[0] in full for n in NAMES if n.endswith(TWINS))


@pytest.mark.parametrize("name", NAMES)
def test_grid_size_and_sweep_dir(name: str) -> None:
    jobs = grid(name)
    assert len(jobs) == declared_jobs(name) > 1
    assert len({tuple(sorted(job)) for job in jobs}) == len(jobs)  # no job twice
    cfg = ablation_config(name)
    assert cfg.hydra.sweep.dir == f"runs/ablation/{name}"
    seeds = {parse_overrides(j)["seed"] for j in jobs}
    if not name.endswith(TWINS):
        assert seeds == {"0", "1", "2"}  # a full grid: three seeds, for the paired effects' intervals
    else:
        assert seeds <= {"0", "1"}  # a twin trades seeds for time (its tables say n)


@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith("_tiny")])
def test_tiny_jobs_compose_to_buildable_models_on_digits(name: str) -> None:
    """Every configuration of a tiny grid composes and its network fits the tiny input size (no training here)."""
    configurations = {tuple(sorted(job_identity(job, drop_seed=True).items())): job for job in grid(name)}
    for job in configurations.values():
        cfg = ablation_config(name, job)
        assert cfg.data._target_.endswith("DigitsDataModule") and "CSVLogger" in cfg.logger.csv._target_
        knobs = OmegaConf.to_container(cfg.model)
        knobs["num_classes"] = 10
        get_spec(knobs).check_input_size(int(cfg.data.image_size))


def test_variants_and_full_grids_choose_what_they_say() -> None:
    models = {}
    for job in grid("seed_question"):
        cfg = ablation_config("seed_question", job)
        models[parse_overrides(job)["ablation/variant"]] = (cfg.model.name, cfg.model.head, cfg.model.stem)
    assert models == {"vgg16": ("vgg16", "fc", "vgg"), "vgg19": ("vgg19", "fc", "vgg"),
                      "resnet18": ("resnet18", "gap", "resnet"), "resnet34": ("resnet34", "gap", "resnet"),
                      "vgg16_gap": ("vgg16", "gap", "vgg"), "resnet34_fc": ("resnet34", "fc", "resnet"),
                      "vgg16_resnet_stem": ("vgg16", "fc", "resnet")}
    cfg = ablation_config("seed_question", grid("seed_question")[0])
    assert cfg.data.name == "imagefolder" and cfg.data.image_size == 224
    cfg = ablation_config("residual_vs_plain", ["model=plain56", "seed=2"])
    assert cfg.data.name == "cifar10" and cfg.model.residual is False and cfg.trainer.max_steps == 64000


def test_command_line_overrides_replace_grid_values() -> None:
    jobs = grid("residual_vs_plain_tiny", ["seed=0", "model=plain20,resnet20", "trainer.max_epochs=1",
                                           "hydra.sweep.dir=/x"])
    assert sorted(parse_overrides(j)["model"] for j in jobs) == ["plain20", "resnet20"]
    assert all(parse_overrides(j)["trainer.max_epochs"] == "1" for j in jobs)


def test_noise_keys_do_not_identify_a_job() -> None:
    assert {"logger", "data.root", "ablation"} <= set(noise_keys()) and "ablation/variant" not in noise_keys()
    assert job_identity(["model=plain20", "seed=1", "+ablation=x", "logger=csv", "data.root=/d"]) == \
        {"model": "plain20", "seed": "1"}
    assert job_identity(["model=plain20", "seed=1"], drop_seed=True) == {"model": "plain20"}


def test_unknown_ablation_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="residual_vs_plain_tiny"):
        ablation_config("no_such_ablation")


@pytest.mark.parametrize("launcher, target", [("slurm", "Slurm"), ("local_gpus", "PackedLocalLauncher")])
def test_submitit_launcher_configs_compose(launcher: str, target: str) -> None:
    cfg = ablation_config("residual_vs_plain", [f"hydra/launcher={launcher}", "hydra.launcher.timeout_min=30"])
    conf = cfg.hydra.launcher
    assert conf._target_.endswith(target) and get_class(conf._target_).__name__ == target
    assert conf.timeout_min == 30 and conf.tasks_per_node == 1
    assert "???" not in OmegaConf.to_yaml(conf)  # every field has a usable default
    if launcher == "slurm":
        assert conf.partition is None and conf.max_num_timeout > 0  # resubmitted jobs resume from last.ckpt
        assert conf.gpus_per_node == 1 and conf.additional_parameters.requeue is True  # #SBATCH --requeue
    else:  # every GPU of the machine, jobs_per_gpu jobs on each
        assert conf.gpus_per_node is None and conf.jobs_per_gpu == 1
