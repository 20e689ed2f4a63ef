"""Everything the dispatcher does through private members of faust, mode and aiokafka.

faust is extended through its public doors where it has them (``app.topic``, ``app.Table``,
``Sensor``/``Monitor``, ``app.page``). What the dispatcher's throughput needs beyond them is
here, and only here, so that the next upgrade of faust-streaming, mode-streaming or aiokafka
has one package to read. The versions these were tested against are pinned in
``pyproject.toml`` and checked when ``citybrain dispatch`` starts (:mod:`.versions`).

:mod:`.consumer`: faust's Kafka transport with batch routes, short fetch waits, a prompt
resume and an inline hand-off.

- ``faust.App._new_transport`` (override): installs the transport whose consumer is ours.
  (``App.on_stop``, public, is extended too: it first calls the callbacks given to
  ``App.on_stopping``, since faust's own stop then waits for every handed-out message to be
  acked, and a writer waiting for Redis must give up first.)
- ``aiokafka.Consumer._new_consumer_thread`` (faust, override): installs our consumer thread.
- ``AIOKafkaConsumerThread._create_worker_consumer`` (faust, override) and
  ``AIOKafkaConsumer._fetch_max_wait_ms`` (aiokafka, written): faust fixes the fetch wait at
  1,500 ms and passes no setting on; aiokafka reads the attribute when its fetcher starts.
- ``Consumer._drain_messages`` (faust, override): the fetch loop, which hands a partition's
  fetched messages to a batch sink instead of one conductor callback each.
- ``Consumer._wait_next_records`` (faust, override and call): polls briefly while a
  partition is paused, instead of faust's one-second wait.
- ``Consumer._read_offset`` (faust, read and written): how far each partition was read, as
  faust's own loop keeps it, so that commits and redelivery work out the same.
- ``Consumer._add_gap`` (faust, call): offsets skipped (compaction, transaction markers)
  count as acked when faust works out the offset to commit.
- ``Consumer._to_message`` (faust, call): an aiokafka record as faust's ``Message``.
- ``Consumer._buffered_partitions``, ``Consumer._get_active_partitions`` (faust, read): which
  partitions are paused for a full buffer, and which are still fetched.
- ``Consumer._commit_every``, ``Consumer._n_acked`` (faust, read and written): faust's
  commit-every-N-acks setting, honoured as its own loop does.
- ``mode.Service._stopped`` (mode, read, the consumer's and the fetcher's): the stop checks
  of faust's own loop.

:mod:`.changelog`:

- ``faust.transport.drivers.aiokafka.Producer._ensure_producer`` (faust, call): the
  ``AIOKafkaProducer`` underneath, whose public ``create_batch``/``send_batch`` send each
  partition's changelog records as one record batch rather than one ``send`` each.

:mod:`.monitor`:

- ``PrometheusMonitor._metrics`` (faust, read): the sensor's metrics, counted a batch at a
  time for messages that bypass faust's streams.
"""
