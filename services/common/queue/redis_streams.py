"""The production control-center queue: Redis Streams through redis-py's asyncio client.

Layout, under a key prefix ``P``:

- ``P:q:<queue>``: a stream per queue (city or district); each record holds the violation id
  and the entry's fields as JSON. Records are never trimmed or deleted.
- ``P:queues``: the set of queue names.
- ``P:e:<violation_id>``: a hash with the entry's place (queue, stream id) and its mutable
  state: status, who set it and when, and the grouped-repeat counter.
- ``P:h:<violation_id>``: a list, the audit history of status changes.
- ``P:r:<violation_id>``: a set, the ids of grouped repeats already counted on the entry.

Stream ids are ``<ms>-<n>`` with ``n`` from one counter shared by all queues, so ids from
different queues sort in the order the entries were appended.

Appends (a batch at a time) and status changes run as Lua scripts, so the stream record and
its hash are written together or not at all: a crash can never leave an entry that a retry
would write twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar, cast

import hiredis
import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.queue import (
    AppendResult,
    EntryNotFoundError,
    EntryStatus,
    PendingEntry,
    QueueEntry,
    QueueUnavailableError,
    StatusChange,
    stream_id_key,
)

# Appends a whole batch in one call: one round trip and one script run for up to a few
# hundred entries, instead of an EVALSHA each (whose packing and parsing in redis-py cost more
# than the script itself). KEYS: the queues set, the id counter, then per entry its hash and
# its stream; ARGV: per entry its violation id, JSON fields and queue. Each entry is written
# whole or not at all, and an id already present keeps its first entry.
_APPEND_MANY = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
-- never behind an earlier id, even if the server clock steps back
ms = math.max(ms, tonumber(redis.call('HGET', KEYS[2], 'ms') or 0))
redis.call('HSET', KEYS[2], 'ms', ms)
local out = {}
local known = {}
for i = 1, (#KEYS - 2) / 2 do
  local entry, stream = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local vid, data, queue = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  local existing = redis.call('HGET', entry, 'entry_id')
  if existing then
    out[i] = {0, existing}
  else
    local id = ms .. '-' .. redis.call('HINCRBY', KEYS[2], 'n', 1)
    redis.call('XADD', stream, id, 'v', vid, 'd', data)
    redis.call('HSET', entry, 'queue', queue, 'entry_id', id, 'status', 'new', 'repeat_count', 0)
    if not known[queue] then
      redis.call('SADD', KEYS[1], queue)
      known[queue] = true
    end
    out[i] = {1, id}
  end
end
return out
"""

_SET_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_by', ARGV[2], 'status_ts_ms', ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4])
return 1
"""

_REPEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[2] ~= '' and redis.call('SADD', KEYS[2], ARGV[2]) == 0 then
  return tonumber(redis.call('HGET', KEYS[1], 'repeat_count'))
end
redis.call('HSET', KEYS[1], 'last_repeat_ts_ms', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'repeat_count', 1)
"""

T = TypeVar("T")
# With decode_responses=True, redis-py returns str where its annotations allow bytes too.
_Records = list[tuple[str, dict[str, str]]]
_XReadReply = list[tuple[str, _Records]] | None

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class _HiredisPackingConnection(aioredis.Connection):
    """A TCP connection that packs commands with hiredis, as redis-py's sync client does.

    The asyncio client packs every argument in Python; for a batch append (three arguments
    and two keys per entry) that cost more than Redis took to run the script.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        # redis-py names some commands in two words ("SCRIPT LOAD"); the protocol wants each
        # word as its own argument. Our arguments are str, bytes and numbers, which hiredis
        # encodes itself (UTF-8 for str), as redis-py's own encoder would.
        name, *rest = args
        words = name.split() if isinstance(name, str | bytes) else [name]
        # hiredis's stub types the argument as a 1-tuple; it packs a tuple of any length.
        packed: bytes = hiredis.pack_command(cast(Any, (*words, *rest)))
        return [packed]


def _entry_json(fields: Mapping[str, Any]) -> bytes | str:
    """An entry's JSON: orjson, which is several times faster than the standard library,
    or the standard library for what orjson refuses (integers beyond 64 bits, which an
    event's extra fields may carry). Both write the same compact UTF-8 JSON."""
    try:
        return orjson.dumps(fields)
    except orjson.JSONEncodeError:
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


class RedisStreamsQueue:
    def __init__(self, client: aioredis.Redis, *, prefix: str = "citybrain") -> None:
        self._r = client
        self._p = prefix
        self._append_many = client.register_script(_APPEND_MANY)
        self._set_status = client.register_script(_SET_STATUS)
        self._repeat = client.register_script(_REPEAT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "citybrain") -> RedisStreamsQueue:
        # TLS and unix-socket URLs keep redis-py's own connection classes.
        tcp = {"connection_class": _HiredisPackingConnection} if url.startswith("redis://") else {}
        client = aioredis.from_url(
            url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2, **tcp
        )
        return cls(client, prefix=prefix)

    def _stream(self, queue: str) -> str:
        return f"{self._p}:q:{queue}"

    def _entry_key(self, violation_id: str) -> str:
        return f"{self._p}:e:{violation_id}"

    def _history_key(self, violation_id: str) -> str:
        return f"{self._p}:h:{violation_id}"

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            return await op
        except _UNAVAILABLE as exc:
            raise QueueUnavailableError(f"Redis unavailable: {exc}") from exc

    async def append(self, fields: Mapping[str, Any], *, queue: str) -> AppendResult:
        (result,) = await self.append_many([PendingEntry(fields=dict(fields), queue=queue)])
        return result

    async def append_many(self, entries: Sequence[PendingEntry]) -> list[AppendResult]:
        if not entries:
            return []
        keys = [f"{self._p}:queues", f"{self._p}:seq"]
        args: list[str | bytes] = []
        for entry in entries:
            violation_id = str(entry.fields["violation_id"])
            keys += (self._entry_key(violation_id), self._stream(entry.queue))
            args += (violation_id, _entry_json(entry.fields), entry.queue)
        replies = await self._call(self._append_many(keys=keys, args=args))
        return [
            AppendResult(entry_id=str(entry_id), created=bool(created))
            for created, entry_id in replies
        ]

    async def queues(self) -> list[str]:
        names = await self._call(cast(Awaitable[set[str]], self._r.smembers(f"{self._p}:queues")))
        return sorted(names)

    async def _views(self, queue: str, records: _Records) -> list[QueueEntry]:
        if not records:
            return []
        pipe = self._r.pipeline(transaction=False)
        for _, rec in records:
            pipe.hgetall(self._entry_key(rec["v"]))
        states = await self._call(pipe.execute())
        return [
            _entry(entry_id, queue, json.loads(rec["d"]), state)
            for (entry_id, rec), state in zip(records, states, strict=True)
        ]

    async def read(
        self, *, queues: list[str] | None = None, after: str = "0-0", count: int = 100
    ) -> list[QueueEntry]:
        names = queues if queues is not None else await self.queues()
        out: list[QueueEntry] = []
        for name in names:
            records = await self._call(self._xrange(self._stream(name), f"({after}", "+", count))
            out.extend(await self._views(name, records))
        out.sort(key=lambda e: stream_id_key(e.entry_id))
        return out[:count]

    async def follow(
        self, *, after: str, block_ms: int, queues: list[str] | None = None
    ) -> list[QueueEntry]:
        entries = await self.read(queues=queues, after=after)
        if entries or block_ms <= 0:
            return entries
        names = queues if queues is not None else await self.queues()
        if not names:
            # XREAD cannot block on a stream that does not exist yet under a name we do not know.
            await asyncio.sleep(block_ms / 1000)
            return await self.read(queues=queues, after=after)
        streams: dict[Any, Any] = {self._stream(n): after for n in names}
        answer = await self._call(
            cast(Awaitable[_XReadReply], self._r.xread(streams, count=100, block=block_ms))
        )
        out: list[QueueEntry] = []
        for stream, records in answer or []:
            out.extend(await self._views(stream.removeprefix(f"{self._p}:q:"), records))
        out.sort(key=lambda e: stream_id_key(e.entry_id))
        return out

    async def _xrange(
        self, stream: str, start: str, end: str, count: int | None = None
    ) -> _Records:
        return cast(_Records, await self._r.xrange(stream, start, end, count))

    async def get(self, violation_id: str) -> QueueEntry:
        state = await self._call(
            cast(Awaitable[dict[str, str]], self._r.hgetall(self._entry_key(violation_id)))
        )
        if not state:
            raise EntryNotFoundError(violation_id)
        entry_id = state["entry_id"]
        records = await self._call(self._xrange(self._stream(state["queue"]), entry_id, entry_id))
        return (await self._views(state["queue"], records))[0]

    async def set_status(
        self, violation_id: str, status: EntryStatus, *, by: str, ts_ms: int, note: str = ""
    ) -> QueueEntry:
        change = StatusChange(
            violation_id=violation_id, status=status, by=by, ts_ms=ts_ms, note=note
        )
        keys = [self._entry_key(violation_id), self._history_key(violation_id)]
        args = [status.value, by, ts_ms, change.model_dump_json()]
        if not await self._call(self._set_status(keys=keys, args=args)):
            raise EntryNotFoundError(violation_id)
        return await self.get(violation_id)

    async def history(self, violation_id: str) -> list[StatusChange]:
        await self.get(violation_id)
        raw = await self._call(
            cast(Awaitable[list[str]], self._r.lrange(self._history_key(violation_id), 0, -1))
        )
        return [StatusChange.model_validate_json(item) for item in raw]

    async def record_repeat(
        self, violation_id: str, *, ts_ms: int, repeat_id: str | None = None
    ) -> int:
        keys = [self._entry_key(violation_id), f"{self._p}:r:{violation_id}"]
        count = int(await self._call(self._repeat(keys=keys, args=[ts_ms, repeat_id or ""])))
        if count < 0:
            raise EntryNotFoundError(violation_id)
        return count

    async def close(self) -> None:
        await self._r.aclose()


def _entry(entry_id: str, queue: str, fields: dict[str, Any], state: dict[str, str]) -> QueueEntry:
    def opt_int(name: str) -> int | None:
        value = state.get(name)
        return int(value) if value else None

    return QueueEntry(
        entry_id=entry_id,
        queue=queue,
        fields=fields,
        status=EntryStatus(state.get("status", EntryStatus.NEW.value)),
        status_by=state.get("status_by") or None,
        status_ts_ms=opt_int("status_ts_ms"),
        repeat_count=int(state.get("repeat_count", 0)),
        last_repeat_ts_ms=opt_int("last_repeat_ts_ms"),
    )
