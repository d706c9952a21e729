#!/usr/bin/env bash
# A short GPU lease used whole: residual_vs_plain_gpu (plain20, resnet20, plain56, resnet56 on real CIFAR-10), the
# four runs packed on one GPU, at the longest schedule that fits MINUTES (default 6) of this command.
#
#   scripts/gpu_grid.sh DATA_ROOT [MINUTES] [SPEED_JSON]
#
# DATA_ROOT holds cifar-10-batches-py (read with data.verify=false: a re-encoded copy is fine). The epochs come from
# a measured speed: resnet20's project img/s in SPEED_JSON (what `make gpu-check` writes; default gpu_check.json),
# else 15 (models/bench/gpu_check.py grid_epochs, calibrated on one H200: packed four to the GPU, the slowest run,
# resnet56, took 5.5 s per 45k+5k-image epoch = 110,000 / gpu-check's resnet20 img/s). (No clock stop: the LR steps are
# fractions of a known number of steps, so a run must know its length; a run cut short by the lease resumes.)
# The records land in runs/ablation/residual_vs_plain_gpu; scripts/report.py turns them into the CPU grids' tables.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: scripts/gpu_grid.sh DATA_ROOT [MINUTES] [SPEED_JSON]}
minutes=${2:-6}
speed_json=${3:-gpu_check.json}
py=${PYTHON:-python3}

epochs=$("$py" -c "import sys; sys.path.insert(0, '.'); from models.bench.gpu_check import grid_epochs, measured_speed
print(grid_epochs(measured_speed('$speed_json'), float('$minutes')))")
echo "gpu_grid: $epochs epochs per run (from the resnet20 speed in ${speed_json}, or 15 without one)"
GRID_EPOCHS=$epochs "$py" scripts/ablate.py residual_vs_plain_gpu "data.root=$root" data.verify=false trainer=gpu \
  logger=csv trainer.enable_progress_bar=false hydra/launcher=local_gpus hydra.launcher.jobs_per_gpu=4 \
  hydra.launcher.compile_wait_s=0
