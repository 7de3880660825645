#!/usr/bin/env bash
# Start -- or, after a crash or a restart, continue -- one run of the recurring hwnas sweep
# through the Determined SDK (a 0.37 or 0.38 master). The search runs here; every trial run is
# a `searcher: single` experiment on the cluster (docs/determined.md, "SDK backend"). It warm-
# starts from the newest finished earlier run of the same sweep (label hwnas-sweep:<name>).
#
#   cron:        30 1 * * *  /opt/hwnas/deploy/sdk-sweep.sh >> /var/log/hwnas-sweep.log 2>&1
#   Kubernetes:  deploy/cronjob-sdk.yaml (a volume keeps HWNAS_SWEEP_DIR across pods)
#   Determined:  det experiment create experiment_yamls/det_sdk_driver.yaml .
#
# Environment: DET_MASTER; credentials as the SDK finds them (DET_USER + DET_PASS, a cached
# `det user login`, or the task's own token inside Determined);
#   HWNAS_SWEEP_CONFIG      search config   (default experiment_yamls/search_nb201_cifar10_nightly.yaml)
#   HWNAS_TRIAL_EXPERIMENT  trials' Determined settings (default experiment_yamls/det_trials_gpu.yaml)
#   HWNAS_SWEEP_DIR         where runs are kept (default runs/sweeps)
#   HWNAS_SWEEP_RUN         this run's folder name (default: today's date, UTC)
set -euo pipefail
HWNAS_DIR="${HWNAS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$HWNAS_DIR"
PY="${PYTHON:-python3}"
CONFIG="${HWNAS_SWEEP_CONFIG:-experiment_yamls/search_nb201_cifar10_nightly.yaml}"
TRIALS="${HWNAS_TRIAL_EXPERIMENT:-experiment_yamls/det_trials_gpu.yaml}"
SWEEPS="${HWNAS_SWEEP_DIR:-runs/sweeps}"
OUT="$SWEEPS/${HWNAS_SWEEP_RUN:-$(date -u +%F)}"
mkdir -p "$SWEEPS"

# One driver at a time per sweep folder (cron may start the next night's while one still runs).
exec 9>"$SWEEPS/.lock"
if ! flock -n 9; then
  echo "$(date -u +%FT%TZ) another hwnas sweep driver is running in $SWEEPS; not starting"
  exit 0
fi

if [ -f "$OUT/state.json" ]; then
  echo "$(date -u +%FT%TZ) continuing the sweep in $OUT"
  exec "$PY" -m hwnas.cli search --resume "$OUT"
fi
name=$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["name"])' "$CONFIG")
echo "$(date -u +%FT%TZ) starting sweep $name in $OUT"
exec "$PY" -m hwnas.cli search "$CONFIG" --backend determined --trial-experiment "$TRIALS" \
  --warm-start "latest:hwnas-sweep:$name" --out "$OUT" "$@"
