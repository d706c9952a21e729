"""Train one model: `python scripts/train.py [overrides]` (see configs/train.yaml for every option).

    python scripts/train.py                                   # resnet20 on the built-in digits, CPU, wandb offline
    python scripts/train.py experiment=digits_quick           # `make demo`
    python scripts/train.py model=resnet56 data=cifar10 data.root=/data/cifar10 trainer=gpu
    python scripts/train.py trainer=ddp trainer.accelerator=cpu trainer.devices=2

Bad input: one line on stderr naming the key and the fix, exit status 2 (HYDRA_FULL_ERROR=1 for the traceback).
`-v` (= verbose=true) shows every library message and warning; <run dir>/train.log keeps them in any case.
"""

from __future__ import annotations

import sys

import _cli  # noqa: F401  (repo on sys.path; one-line errors, exit 2)
import hydra
from omegaconf import DictConfig


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode == RunMode.RUN:  # one command line: its own checks before torch and Lightning load
        from models.train.preflight import preflight  # (~7 s of imports), so a bad value is reported in a second;

        preflight(cfg)  # a sweep's job records its failure in results.json instead, where the report counts it
    from models.train.run import train

    return train(cfg)  # a sweep's launcher sees the record (its status, where the run lives)


if __name__ == "__main__":
    if "-v" in sys.argv[1:]:  # Hydra has no -v of its own: it means verbose=true here
        sys.argv = [a for a in sys.argv if a != "-v"] + ["verbose=true"]
    main()
