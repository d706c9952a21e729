#!/usr/bin/env bash
# A short GPU lease used whole: residual_vs_plain_gpu (plain20, resnet20, plain56, resnet56 on real CIFAR-10), the
# four runs packed on one GPU, at the longest schedule that fits MINUTES (default 6) of this command.
#
#   scripts/gpu_grid.sh DATA_ROOT [MINUTES] [SPEED_JSON]
#
# DATA_ROOT holds cifar-10-batches-py (read with data.verify=false: a re-encoded copy is fine). The epochs come from
# a measured speed: resnet20's project img/s in SPEED_JSON (what `make gpu-check` writes; default gpu_check.json),
# else 15. One epoch of the four nets costs about 50,000 x (2 + 2 x 3.09) resnet20 images of GPU time (resnet56 has
# 3.09x resnet20's MACs; 45k train + 5k validation), and the runs get what is left of MINUTES after start-up,
# compile and the two test passes (~2 min), at 80%. GRID_MAX_TIME stops a run that is still slower than that, and
# the run then records the epochs it did. The records land in runs/ablation/residual_vs_plain_gpu; the report
# (scripts/report.py) turns them into the same tables as the CPU grids.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: scripts/gpu_grid.sh DATA_ROOT [MINUTES] [SPEED_JSON]}
minutes=${2:-6}
speed_json=${3:-gpu_check.json}
py=${PYTHON:-python3}

read -r epochs max_time < <("$py" - "$speed_json" "$minutes" <<'EOF'
import json, re, sys
path, minutes = sys.argv[1], float(sys.argv[2])
train_s = max(60.0, minutes * 60 - 120)  # start-up, compile and the test passes take about two minutes
try:
    detail = json.load(open(path))["checks"]["speed"]["detail"]
    speed = float(re.search(r"project ([\d,.]+) img/s", detail).group(1).replace(",", ""))
except (OSError, KeyError, AttributeError, ValueError):
    speed = None
epochs = 15 if not speed else max(5, min(60, int(0.8 * train_s * speed / (50_000 * (2 + 2 * 3.09)))))
stop = int(train_s + 60)
print(epochs, f"00:00:{stop // 60:02d}:{stop % 60:02d}")
EOF
)
echo "gpu_grid: $epochs epochs per run (resnet20 speed from ${speed_json}), each stopped at $max_time at the latest"
GRID_EPOCHS=$epochs GRID_MAX_TIME=$max_time "$py" scripts/ablate.py residual_vs_plain_gpu "data.root=$root" \
  data.verify=false trainer=gpu logger=csv trainer.enable_progress_bar=false hydra/launcher=local_gpus \
  hydra.launcher.jobs_per_gpu=4 hydra.launcher.compile_wait_s=0
