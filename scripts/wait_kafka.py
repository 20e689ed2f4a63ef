"""Wait until a Kafka broker really serves clients: create, then delete, a probe topic.

Used by scripts/kafka-ctl.sh. A listening port is not enough: a KRaft node accepts
connections before its controller has elected itself and before it can create topics.

    python scripts/wait_kafka.py --bootstrap 127.0.0.1:9092 --timeout-s 90
    python scripts/wait_kafka.py --bootstrap 127.0.0.1:9092 --timeout-s 2 --quick  # answers?

Exit status 0 when ready, 1 on timeout.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
import uuid
import warnings


def _probe(bootstrap: str, quick: bool) -> None:
    """One attempt; raises if the broker can't serve a metadata (or topic) round-trip."""
    from kafka.admin import KafkaAdminClient, NewTopic

    # kafka-python backs off for seconds after a refused connection, so don't let it see one.
    host, _, port = bootstrap.rpartition(":")
    socket.create_connection((host, int(port)), timeout=2).close()
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="citybrain-wait-kafka",
        request_timeout_ms=5000,
        reconnect_backoff_max_ms=500,
    )
    try:
        admin.describe_cluster()
        if quick:
            return
        name = f"citybrain-probe-{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        admin.delete_topics([name])
    finally:
        admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--timeout-s", type=float, default=90.0)
    parser.add_argument("--quick", action="store_true", help="metadata only, no probe topic")
    args = parser.parse_args()

    warnings.simplefilter("ignore")
    # kafka-python logs every refused connection at ERROR while the broker starts.
    logging.basicConfig(level=logging.CRITICAL)

    deadline = time.monotonic() + args.timeout_s
    last_error = ""
    while True:
        try:
            _probe(args.bootstrap, quick=args.quick)
            return 0
        except Exception as exc:  # any failure means "not ready yet"
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            print(f"kafka at {args.bootstrap} not ready: {last_error}", file=sys.stderr)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
