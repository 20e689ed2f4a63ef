"""``citybrain dispatch``: run the faust dispatcher until SIGTERM or SIGINT."""

from __future__ import annotations

import gc
import logging
import tempfile
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from prometheus_client import CollectorRegistry

from services.common.bus import BusError
from services.common.bus.kafka import MAX_MESSAGE_BYTES, KafkaBus
from services.common.config.catalogue import load_catalogue
from services.common.config.loader import ConfigError
from services.common.console import fail
from services.common.events import VIOLATIONS_TOPIC
from services.common.queue import open_queue
from services.dispatcher.config import DispatchConfig, load_dispatch_config

log = logging.getLogger(__name__)


def _kafka_servers(bus_url: str) -> str:
    parts = urlsplit(bus_url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise fail(f"--bus {bus_url!r}: the dispatcher needs kafka://HOST:PORT")
    return parts.netloc


def _ensure_topics(
    bootstrap_servers: str, *, topic: str, dlq_topic: str, config: DispatchConfig
) -> int:
    """Create the source and dead-letter topics if needed; returns the source's partitions."""
    bus = KafkaBus(bootstrap_servers=bootstrap_servers, client_id="citybrain-dispatcher")
    try:
        bus.ensure_topics(
            [
                config.topics.violations.spec(
                    topic, max_message_bytes=VIOLATIONS_TOPIC.max_message_bytes
                ),
                # Dead letters carry the original bytes, whatever their size.
                config.topics.dead_letters.spec(dlq_topic, max_message_bytes=MAX_MESSAGE_BYTES),
            ]
        )
        partitions = bus.partition_count(topic)
    except BusError as exc:
        raise fail(str(exc)) from None
    finally:
        bus.close()
    if partitions != config.topics.violations.partitions:
        # A topic that existed before (or was auto-created by a producer) keeps its count,
        # and the tables' changelogs must follow it.
        log.warning(
            "topic %s has %d partitions, not the configured %d; using %d",
            topic,
            partitions,
            config.topics.violations.partitions,
            partitions,
        )
    return partitions


def _freeze_startup_heap() -> None:
    """Leave everything alive once the worker is ready out of the cyclic GC's full passes.

    The modules, the faust app and a restored table are hundreds of thousands of objects
    that live as long as the process. Every full collection walked them all: pauses of 60
    to 120 ms, which were the p99 tail at 2,000 events/s (8 to 10 ms once frozen). Plain
    reference counting still frees them. No collection first: one would pause the worker
    just as it starts to take events, and what it could find is start-up garbage, once.
    """
    gc.freeze()


def dispatch(
    *,
    bus: Annotated[str, typer.Option("--bus", help="kafka://HOST:PORT")],
    queue: Annotated[str, typer.Option("--queue", help="redis://HOST:PORT, optionally /DB")],
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", help="HTTP port for /metrics")
    ] = 6066,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config", help="dispatch settings; default: dispatch.yaml in the config directory"
        ),
    ] = None,
    catalogue_path: Annotated[
        Path | None,
        typer.Option(
            "--catalogue",
            help="city/camera catalogue; default: cities.yaml in the config directory",
        ),
    ] = None,
    topic: Annotated[
        str, typer.Option("--topic", help="source topic; dead letters go to TOPIC.dlq")
    ] = VIOLATIONS_TOPIC.name,
    group: Annotated[
        str,
        typer.Option(
            "--group",
            help="faust app id and consumer group: processes with the same one share the work",
        ),
    ] = "citybrain-dispatcher",
    queue_prefix: Annotated[
        str, typer.Option("--queue-prefix", help="Redis key prefix of the queue")
    ] = "citybrain",
) -> None:
    """Dispatch violations from Kafka into the control-center queue until SIGTERM/SIGINT."""
    import faust

    from services.dispatcher.app import DispatcherSettings, build_app

    try:
        config = load_dispatch_config(config_path)
        catalogue = load_catalogue(catalogue_path)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    bootstrap_servers = _kafka_servers(bus)
    dlq_topic = f"{topic}.dlq"
    source_partitions = _ensure_topics(
        bootstrap_servers, topic=topic, dlq_topic=dlq_topic, config=config
    )
    # faust wants a data directory; ours only ever holds empty table folders, so it is a
    # temporary one rather than ``<group>-data`` left in the working directory.
    with tempfile.TemporaryDirectory(prefix=f"{group}-") as datadir:
        settings = DispatcherSettings(
            bootstrap_servers=bootstrap_servers,
            source_partitions=source_partitions,
            config=config,
            catalogue=catalogue,
            datadir=Path(datadir),
            app_id=group,
            topic=topic,
            dlq_topic=dlq_topic,
            web_port=metrics_port,
        )
        app = build_app(
            settings, queue=open_queue(queue, prefix=queue_prefix), registry=CollectorRegistry()
        )

        class Worker(faust.Worker):
            async def on_startup_finished(self) -> None:
                await super().on_startup_finished()
                _freeze_startup_heap()

        # The worker installs the SIGTERM/SIGINT handlers and stops the app cleanly on them.
        Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()


def register(app: typer.Typer) -> None:
    app.command("dispatch")(dispatch)
