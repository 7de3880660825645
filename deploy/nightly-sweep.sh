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

if [[ -n "${DET_USER:-}" && -n "${DET_PASS:-}" ]]; then
  # The CLI reads DET_USER/DET_PASS; no interactive login needed.
  export DET_USER DET_PASS
fi

# Skip tonight if the previous run of this sweep is still going (no overlapping sweeps):
# any experiment labelled "recurring" (det_recurring_sweep.yaml's label) not yet finished.
if python3 - <<'PY'
import sys
from determined.experimental import client
busy = [client.ExperimentState.ACTIVE, client.ExperimentState.PAUSED,
        client.ExperimentState.QUEUED, client.ExperimentState.RUNNING]
sys.exit(0 if client.list_experiments(labels=["recurring"], states=busy) else 1)
PY
then
  echo "$(date -u +%FT%TZ) previous hwnas sweep still running; not starting another"
  exit 0
fi

echo "$(date -u +%FT%TZ) starting hwnas sweep from $CONFIG"
det experiment create "$CONFIG" . "$@"
