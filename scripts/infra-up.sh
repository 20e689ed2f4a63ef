#!/usr/bin/env bash
# Start local Kafka (KRaft, 127.0.0.1:$KAFKA_PORT) and Redis (127.0.0.1:$REDIS_PORT) and
# wait until both answer. Idempotent. `make infra-up` calls this.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
"$here/redis-ctl.sh" start
"$here/kafka-ctl.sh" start
