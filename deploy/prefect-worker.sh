#!/bin/sh
# The prefect-worker service (compose.yaml and `make stack`): wait for the Prefect server,
# create the process work pool, deploy deploy/prefect.yaml, then run the worker.
# Run from anywhere; it works from the directory above deploy/ (the repository root, or
# /opt/basinflow in the image), where the deployments' module entrypoints need no files.
set -eu
cd "$(dirname "$0")/.."
export BASINFLOW_HOME="${BASINFLOW_HOME:-$(pwd)}"
pool="${BASINFLOW_POOL:-basinflow}"
prefect server status --wait --timeout 120 >/dev/null
prefect work-pool create "$pool" --type process --overwrite >/dev/null
prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml
exec prefect worker start --pool "$pool"
