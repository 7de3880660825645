#!/usr/bin/env bash
# Start one run of the recurring hwnas sweep on a Determined 0.37 cluster. Meant for cron:
#
#   # m h dom mon dow  command
#   30 1 * * *  /opt/hwnas/deploy/nightly-sweep.sh >> /var/log/hwnas-nightly.log 2>&1
#
# Needs: the `det` CLI (pip install determined==0.37.0), DET_MASTER, and credentials for a
# service user (DET_USER + DET_PASS, or a prior `det user login` by the cron user).
# The searcher warm-starts from the newest finished run of the same sweep on its own
# (hyperparameters.warm_start: latest:hwnas-sweep:<search name>), so nothing is passed here.
set -euo pipefail
HWNAS_DIR="${HWNAS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
CONFIG="${HWNAS_SWEEP_CONFIG:-experiment_yamls/det_recurring_sweep.yaml}"
cd "$HWNAS_DIR"

# Skip tonight if the previous run of this sweep is still going (no overlapping sweeps):
# any experiment labelled "recurring" (det_recurring_sweep.yaml's label) not yet finished.
set +e
python3 - <<'PY'
import sys
from determined.experimental import client
S = client.ExperimentState
busy = [S.ACTIVE, S.PAUSED, S.QUEUED, S.PULLING, S.STARTING, S.RUNNING]
sys.exit(10 if client.list_experiments(labels=["recurring"], states=busy) else 0)
PY
status=$?
set -e
case "$status" in
  0) ;;
  10) echo "$(date -u +%FT%TZ) previous hwnas sweep still running; not starting another"
      exit 0 ;;
  *) echo "$(date -u +%FT%TZ) cannot ask the Determined master about running sweeps" >&2
     exit 1 ;;
esac

echo "$(date -u +%FT%TZ) starting hwnas sweep from $CONFIG"
det experiment create "$CONFIG" . "$@"
