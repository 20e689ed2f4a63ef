#!/usr/bin/env bash
# Stop local Kafka and Redis and delete their data, so the next infra-up starts clean.
# Idempotent: fine when nothing runs. `make infra-down` calls this.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
status=0
"$here/kafka-ctl.sh" stop || status=$?
"$here/redis-ctl.sh" stop || status=$?
if [[ $status -eq 0 ]]; then
    "$here/kafka-ctl.sh" wipe
    "$here/redis-ctl.sh" wipe
fi
exit "$status"
