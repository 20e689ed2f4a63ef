"""The production control-center queue: Redis Streams through redis-py's asyncio client.

Layout, under a key prefix ``P``:

- ``P:q:<queue>``: a stream per queue (city or district); each record holds the violation id
  and the entry's fields as JSON. A record leaves only when retention archives its entry.
- ``P:queues``: the set of queue names; ``P:seq``: the last entry id handed out.
- ``P:e:<violation_id>``: a hash with the entry's place (queue, stream id, score), the
  fields it is filtered on (city, district, type, priority, camera) and its mutable state:
  status, who set it and when, version, and the grouped-repeat counter.
- ``P:h:<violation_id>``: a list, the audit history of status changes.
- ``P:r:<violation_id>``: a set, the ids of grouped repeats already counted on the entry.
- ``P:x:all`` and ``P:x:<field>:<value>``: sorted sets of violation ids scored by
  :func:`entry_score`, one per filter value, so that a filtered page newest first walks
  the smallest matching index from the cursor down and checks the rest in the hash.
- ``P:counts``: a hash of tile counters (``status:new``, ``type:red_light``,
  ``city:wuzhen``); ``P:m:<type>:<day>``: entries queued per minute, a hash per type and
  day that expires after a week.
- ``P:closed``: a sorted set of resolved or rejected entries by the time they were closed,
  which retention walks from the oldest.
- ``P:events``: the change log, a stream capped at about ``events_maxlen`` records: one per
  new entry and one per status change, which the live stream (SSE) follows.

Entry ids are ``<ms>-<n>`` with ``n`` counting within a millisecond across all queues, so ids
from different queues sort in the order the entries were appended and fit one score.

Appends (a batch at a time), status changes and evictions run as Lua scripts, so an entry,
its indexes and counters change together or not at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar, cast

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.queue import (
    SUB_MS_SLOTS,
    AppendResult,
    Change,
    ChangeKind,
    DispatchedEntry,
    EntryFilter,
    EntryNotFoundError,
    EntryPage,
    EntryStatus,
    PendingEntry,
    QueueEntry,
    QueueUnavailableError,
    StatusChange,
    StatusConflictError,
    TileCounts,
    stream_id_key,
)

# Appends a whole batch in one call: one round trip and one script run for up to a few
# hundred entries. ARGV: the prefix, the change log's cap, then per entry its violation id,
# JSON, queue, city, district, type, priority and camera. Each entry is written whole or not
# at all, and an id already present keeps its first entry.
_APPEND_MANY = """
local p, maxlen = ARGV[1], ARGV[2]
local seq = p .. ':seq'
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local last = tonumber(redis.call('HGET', seq, 'ms') or 0)
local n = tonumber(redis.call('HGET', seq, 'n') or -1)
-- never behind an earlier id, even if the server clock steps back
if ms > last then n = -1 else ms = last end
local out = {}
local known = {}
local per = 8
-- Index members and counters are gathered over the batch and written once per key at the
-- end: a batch has few distinct cities, cameras or minutes, so this saves most commands.
local zadds, zkeys, incrs, ikeys = {}, {}, {}, {}
local function add(key, score, member)
  local list = zadds[key]
  if not list then list = {}; zadds[key] = list; zkeys[#zkeys + 1] = key end
  list[#list + 1] = score
  list[#list + 1] = member
end
local function count(key, field)
  local fields = incrs[key]
  if not fields then fields = {}; incrs[key] = fields; ikeys[#ikeys + 1] = key end
  fields[field] = (fields[field] or 0) + 1
end
for i = 0, (#ARGV - 2) / per - 1 do
  local b = 2 + i * per
  local vid, data, queue = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local entry = p .. ':e:' .. vid
  local existing = redis.call('HGET', entry, 'entry_id')
  if existing then
    out[i + 1] = {0, existing}
  else
    n = n + 1
    if n >= __SLOTS__ then ms = ms + 1; n = 0 end
    local id = string.format('%d-%d', ms, n)
    local score = string.format('%d', ms * __SLOTS__ + n)
    redis.call('XADD', p .. ':q:' .. queue, id, 'v', vid, 'd', data)
    local dims = {'city', ARGV[b + 4], 'district', ARGV[b + 5], 'type', ARGV[b + 6],
                  'priority', ARGV[b + 7], 'camera', ARGV[b + 8], 'status', 'new'}
    redis.call('HSET', entry, 'queue', queue, 'entry_id', id, 'score', score, 'version', 0,
               'repeat_count', 0, unpack(dims))
    add(p .. ':x:all', score, vid)
    for d = 1, #dims, 2 do
      add(p .. ':x:' .. dims[d] .. ':' .. dims[d + 1], score, vid)
    end
    count(p .. ':counts', 'status:new')
    count(p .. ':counts', 'type:' .. ARGV[b + 6])
    count(p .. ':counts', 'city:' .. ARGV[b + 4])
    local minute = math.floor(ms / 60000)
    local day = string.format('%d', math.floor(minute / 1440))
    count(p .. ':m:' .. ARGV[b + 6] .. ':' .. day, string.format('%d', minute))
    redis.call('XADD', p .. ':events', 'MAXLEN', '~', maxlen, '*', 'k', 'entry', 'v', vid)
    if not known[queue] then
      redis.call('SADD', p .. ':queues', queue)
      known[queue] = true
    end
    out[i + 1] = {1, id}
  end
end
for _, key in ipairs(zkeys) do
  local list = zadds[key]
  -- unpack takes a few thousand values at most
  for first = 1, #list, 1000 do
    redis.call('ZADD', key, unpack(list, first, math.min(first + 999, #list)))
  end
end
for _, key in ipairs(ikeys) do
  for field, by in pairs(incrs[key]) do
    redis.call('HINCRBY', key, field, by)
  end
  if string.find(key, ':m:', #p + 1, true) == #p + 1 then
    redis.call('EXPIRE', key, __SERIES_TTL_S__)
  end
end
redis.call('HSET', seq, 'ms', string.format('%d', ms), 'n', n)
return out
"""

# ARGV: prefix, violation id, new status, operator, ts_ms, the history record's JSON without
# its closing brace, expected version ('' for any), allowed statuses (space separated, ''
# for any), the change log's cap. Returns {1, version}, {0} if there is no such entry, or
# {2} when the version or status does not allow the change.
_SET_STATUS = """
local p, vid, status, operator, ts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local entry = p .. ':e:' .. vid
local cur = redis.call('HMGET', entry, 'status', 'version', 'score')
if not cur[1] then return {0} end
local version = tonumber(cur[2])
if ARGV[7] ~= '' and tonumber(ARGV[7]) ~= version then return {2} end
if ARGV[8] ~= '' and not string.find(' ' .. ARGV[8] .. ' ', ' ' .. cur[1] .. ' ', 1, true) then
  return {2}
end
version = version + 1
redis.call('HSET', entry, 'status', status, 'status_by', operator, 'status_ts_ms', ts,
           'version', version)
redis.call('ZREM', p .. ':x:status:' .. cur[1], vid)
redis.call('ZADD', p .. ':x:status:' .. status, cur[3], vid)
redis.call('HINCRBY', p .. ':counts', 'status:' .. cur[1], -1)
redis.call('HINCRBY', p .. ':counts', 'status:' .. status, 1)
if status == 'resolved' or status == 'false_positive' then
  redis.call('ZADD', p .. ':closed', ts, vid)
else
  redis.call('ZREM', p .. ':closed', vid)
end
redis.call('RPUSH', p .. ':h:' .. vid,
           ARGV[6] .. ',"from_status":"' .. cur[1] .. '","version":' .. version .. '}')
redis.call('XADD', p .. ':events', 'MAXLEN', '~', ARGV[9], '*', 'k', 'status', 'v', vid,
           's', status, 'o', operator, 't', ts, 'n', version)
return {1, version}
"""

_REPEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[2] ~= '' and redis.call('SADD', KEYS[2], ARGV[2]) == 0 then
  return tonumber(redis.call('HGET', KEYS[1], 'repeat_count'))
end
redis.call('HSET', KEYS[1], 'last_repeat_ts_ms', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'repeat_count', 1)
"""

# Walks the smallest of the candidate indexes from ``high`` down to ``low`` and keeps the
# ids whose hash matches every filter, until ``limit`` match or ``budget`` were examined.
# ARGV: prefix, low, high, limit, budget, the number of indexes, the index keys, then
# field/value pairs. Returns {ids, last score examined, 1 if the range is exhausted}.
_QUERY = """
local p, low, high = ARGV[1], ARGV[2], ARGV[3]
local limit, budget, nidx = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local best, best_n = p .. ':x:all', nil
for i = 1, nidx do
  local n = redis.call('ZCARD', ARGV[6 + i])
  if best_n == nil or n < best_n then best, best_n = ARGV[6 + i], n end
end
local names, wanted = {}, {}
for i = 7 + nidx, #ARGV, 2 do
  names[#names + 1] = ARGV[i]
  wanted[#wanted + 1] = ARGV[i + 1]
end
local out, scanned, last, exhausted = {}, 0, '', 0
local top = high
while #out < limit and scanned < budget do
  local chunk = math.min(256, budget - scanned)
  local batch = redis.call('ZRANGE', best, top, low, 'BYSCORE', 'REV', 'LIMIT', 0, chunk,
                           'WITHSCORES')
  for j = 1, #batch, 2 do
    scanned = scanned + 1
    last = batch[j + 1]
    local ok = true
    if #names > 0 then
      local got = redis.call('HMGET', p .. ':e:' .. batch[j], unpack(names))
      for k = 1, #names do
        if got[k] ~= wanted[k] then ok = false; break end
      end
    end
    if ok then
      out[#out + 1] = batch[j]
      if #out >= limit then break end
    end
  end
  if #batch < 2 * chunk then
    if #out < limit or #batch == 0 then exhausted = 1 end
    break
  end
  top = '(' .. last
end
return {out, last, exhausted}
"""

# ARGV: prefix, violation id, version. Removes the entry if it is still at that version.
_EVICT = """
local p, vid = ARGV[1], ARGV[2]
local entry = p .. ':e:' .. vid
local cur = redis.call('HGETALL', entry)
if #cur == 0 then return 0 end
local h = {}
for i = 1, #cur, 2 do h[cur[i]] = cur[i + 1] end
if h['version'] ~= ARGV[3] then return 0 end
redis.call('XDEL', p .. ':q:' .. h['queue'], h['entry_id'])
redis.call('ZREM', p .. ':x:all', vid)
for _, d in ipairs({'city', 'district', 'type', 'priority', 'camera', 'status'}) do
  redis.call('ZREM', p .. ':x:' .. d .. ':' .. h[d], vid)
end
redis.call('ZREM', p .. ':closed', vid)
redis.call('DEL', entry, p .. ':h:' .. vid, p .. ':r:' .. vid)
return 1
"""

T = TypeVar("T")
# With decode_responses=True, redis-py returns str where its annotations allow bytes too.
_Records = list[tuple[str, dict[str, str]]]
_XReadReply = list[tuple[str, _Records]] | None

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)

# A blocking read never waits longer than this, and its connection's socket timeout is
# longer still, so that a quiet minute is an empty answer rather than a timeout error.
MAX_BLOCK_MS = 30_000
COMMAND_TIMEOUT_S = 5.0
BLOCKING_TIMEOUT_S = MAX_BLOCK_MS / 1000 + COMMAND_TIMEOUT_S
# Entries a query examines per round trip at most, and round trips per page at most.
QUERY_BUDGET = 2_000
QUERY_ROUNDS = 4
DEFAULT_EVENTS_MAXLEN = 100_000
# The per-minute counts live in one hash per type and day, which expires on its own: the
# chart looks back a day at most, so a week is plenty, and Redis never holds more.
SERIES_TTL_S = 7 * 86_400
MINUTES_PER_DAY = 1_440


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


def _client(url: str, *, pool_size: int, socket_timeout_s: float) -> aioredis.Redis:
    """A client whose pool waits for a free connection (up to the command timeout) rather
    than failing with "Too many connections" under a burst."""
    # TLS and unix-socket URLs keep redis-py's own connection classes.
    tcp = {"connection_class": _HiredisPackingConnection} if url.startswith("redis://") else {}
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=COMMAND_TIMEOUT_S,
        decode_responses=True,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=2,
        **tcp,
    )
    return aioredis.Redis.from_pool(pool)


class RedisStreamsQueue:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        blocking: aioredis.Redis | None = None,
        prefix: str = "citybrain",
        events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
    ) -> None:
        self._r = client
        self._blocking = blocking or client
        self._p = prefix
        self._events_maxlen = events_maxlen
        self._append_many = client.register_script(
            _APPEND_MANY.replace("__SLOTS__", str(SUB_MS_SLOTS)).replace(
                "__SERIES_TTL_S__", str(SERIES_TTL_S)
            )
        )
        self._set_status = client.register_script(_SET_STATUS)
        self._repeat = client.register_script(_REPEAT)
        self._query = client.register_script(_QUERY)
        self._evict = client.register_script(_EVICT)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "citybrain", pool_size: int = 50
    ) -> RedisStreamsQueue:
        """A queue with ``pool_size`` connections for commands and a few for blocking reads."""
        client = _client(url, pool_size=pool_size, socket_timeout_s=COMMAND_TIMEOUT_S)
        blocking = _client(url, pool_size=4, socket_timeout_s=BLOCKING_TIMEOUT_S)
        return cls(client, blocking=blocking, prefix=prefix)

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

    async def append(self, fields: DispatchedEntry, *, queue: str) -> AppendResult:
        (result,) = await self.append_many([PendingEntry(fields=fields, queue=queue)])
        return result

    async def append_many(self, entries: Sequence[PendingEntry]) -> list[AppendResult]:
        if not entries:
            return []
        args: list[str | bytes | int] = [self._p, self._events_maxlen]
        for pending in entries:
            f = pending.fields
            args += (
                f.violation_id,
                f.model_dump_json(by_alias=True),
                pending.queue,
                f.city,
                f.district,
                f.type.value,
                f.priority,
                f.camera_id,
            )
        replies = await self._call(self._append_many(keys=[f"{self._p}:seq"], args=args))
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
            _entry(entry_id, queue, rec["d"], state)
            for (entry_id, rec), state in zip(records, states, strict=True)
            if state
        ]

    async def _by_ids(self, violation_ids: Sequence[str]) -> list[QueueEntry]:
        """The entries for ``violation_ids``, in that order; ids no longer here are left out."""
        if not violation_ids:
            return []
        pipe = self._r.pipeline(transaction=False)
        for vid in violation_ids:
            pipe.hgetall(self._entry_key(vid))
        states: list[dict[str, str]] = await self._call(pipe.execute())
        pipe = self._r.pipeline(transaction=False)
        for state in states:
            if state:
                pipe.xrange(self._stream(state["queue"]), state["entry_id"], state["entry_id"])
        records: list[_Records] = await self._call(pipe.execute())
        present = [s for s in states if s]
        return [
            _entry(state["entry_id"], state["queue"], found[0][1]["d"], state)
            for state, found in zip(present, records, strict=True)
            if found
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
        block_ms = min(block_ms, MAX_BLOCK_MS)
        if not names:
            # XREAD cannot block on a stream that does not exist yet under a name we do not know.
            await asyncio.sleep(block_ms / 1000)
            return await self.read(queues=queues, after=after)
        streams: dict[Any, Any] = {self._stream(n): after for n in names}
        answer = await self._call(
            cast(Awaitable[_XReadReply], self._blocking.xread(streams, count=100, block=block_ms))
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

    async def query(
        self, where: EntryFilter, *, before: int | None = None, limit: int = 50
    ) -> EntryPage:
        low, high = where.score_range(before)
        indexed = where.indexed()
        index_keys = [f"{self._p}:x:{name}:{value}" for name, value in indexed.items()]
        # The driving index is one of these; checking its own field again costs little.
        checks = [x for pair in indexed.items() for x in pair]
        found: list[str] = []
        next_cursor: int | None = None
        for _ in range(QUERY_ROUNDS):
            if high < low:
                break
            args: list[str | int] = [
                self._p,
                low,
                high,
                limit - len(found),
                QUERY_BUDGET,
                len(index_keys),
            ]
            ids, last, exhausted = await self._call(
                self._query(keys=[], args=[*args, *index_keys, *checks])
            )
            found += ids
            next_cursor = None if exhausted else int(float(last))
            if exhausted or len(found) >= limit:
                break
            high = int(float(last)) - 1
        return EntryPage(entries=await self._by_ids(found), next_cursor=next_cursor)

    async def get(self, violation_id: str) -> QueueEntry:
        found = await self._by_ids([violation_id])
        if not found:
            raise EntryNotFoundError(violation_id)
        return found[0]

    async def set_status(
        self,
        violation_id: str,
        status: EntryStatus,
        *,
        operator: str,
        ts_ms: int,
        note: str = "",
        allowed_from: frozenset[EntryStatus] | None = None,
        expected_version: int | None = None,
    ) -> QueueEntry:
        # The script appends from_status and version, which only it knows.
        record = StatusChange(
            violation_id=violation_id,
            status=status,
            from_status=status,
            operator=operator,
            ts_ms=ts_ms,
            note=note,
            version=0,
        ).model_dump_json(exclude={"from_status", "version"})[:-1]
        args = [
            self._p,
            violation_id,
            status.value,
            operator,
            ts_ms,
            record,
            "" if expected_version is None else expected_version,
            "" if allowed_from is None else " ".join(s.value for s in allowed_from) or "-",
            self._events_maxlen,
        ]
        reply = await self._call(self._set_status(keys=[], args=args))
        if reply[0] == 0:
            raise EntryNotFoundError(violation_id)
        entry = await self.get(violation_id)
        if reply[0] == 2:
            raise StatusConflictError(entry)
        return entry

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

    async def counts(self) -> TileCounts:
        raw = await self._call(
            cast(Awaitable[dict[str, str]], self._r.hgetall(f"{self._p}:counts"))
        )
        out = TileCounts()
        groups = {"status": out.by_status, "type": out.by_type, "city": out.by_city}
        for key, value in raw.items():
            group, _, name = key.partition(":")
            if group in groups and int(value) > 0:
                groups[group][name] = int(value)
        return out

    async def per_minute(self, *, since_ms: int, until_ms: int) -> dict[str, list[int]]:
        minutes = range(since_ms // 60_000, until_ms // 60_000 + 1)
        days = sorted({m // MINUTES_PER_DAY for m in minutes})
        types = list((await self.counts()).by_type)
        pipe = self._r.pipeline(transaction=False)
        for name in types:
            for day in days:
                pipe.hmget(f"{self._p}:m:{name}:{day}", [str(m) for m in minutes])
        rows: list[list[str | None]] = await self._call(pipe.execute())
        out: dict[str, list[int]] = {}
        for i, name in enumerate(types):
            per_day = rows[i * len(days) : (i + 1) * len(days)]
            out[name] = [sum(int(row[k] or 0) for row in per_day) for k in range(len(minutes))]
        return out

    async def changes(self, *, after: str, block_ms: int, count: int = 500) -> list[Change]:
        streams: dict[Any, Any] = {f"{self._p}:events": after}
        if block_ms > 0:
            read = self._blocking.xread(streams, count=count, block=min(block_ms, MAX_BLOCK_MS))
        else:
            read = self._r.xread(streams, count=count)
        answer = await self._call(cast(Awaitable[_XReadReply], read))
        records = answer[0][1] if answer else []
        entries = {e.violation_id: e for e in await self._by_ids([r["v"] for _, r in records])}
        return [
            _change(change_id, rec, entries[rec["v"]])
            for change_id, rec in records
            if rec["v"] in entries
        ]

    async def _event_id(self, *, last: bool) -> str:
        key = f"{self._p}:events"
        op = self._r.xrevrange(key, count=1) if last else self._r.xrange(key, count=1)
        found = await self._call(cast(Awaitable[_Records], op))
        return found[0][0] if found else "0-0"

    async def last_change_id(self) -> str:
        return await self._event_id(last=True)

    async def first_change_id(self) -> str:
        return await self._event_id(last=False)

    async def closed_before(self, ts_ms: int, *, limit: int) -> list[str]:
        found = self._r.zrangebyscore(f"{self._p}:closed", "-inf", f"({ts_ms}", 0, limit)
        return list(await self._call(cast(Awaitable[list[str]], found)))

    async def evict(self, violation_id: str, *, version: int) -> bool:
        args: list[str | int] = [self._p, violation_id, version]
        return bool(await self._call(self._evict(keys=[], args=args)))

    async def close(self) -> None:
        await self._r.aclose()
        if self._blocking is not self._r:
            await self._blocking.aclose()


def _change(change_id: str, rec: dict[str, str], now: QueueEntry) -> Change:
    """A change-log record with the entry as it stood right after that change."""
    if rec["k"] == ChangeKind.STATUS:
        then = now.model_copy(
            update={
                "status": EntryStatus(rec["s"]),
                "status_by": rec["o"],
                "status_ts_ms": int(rec["t"]),
                "version": int(rec["n"]),
            }
        )
        return Change(change_id=change_id, kind=ChangeKind.STATUS, entry=then)
    then = now.model_copy(
        update={"status": EntryStatus.NEW, "status_by": None, "status_ts_ms": None, "version": 0}
    )
    return Change(change_id=change_id, kind=ChangeKind.ENTRY, entry=then)


def _entry(entry_id: str, queue: str, data: str, state: dict[str, str]) -> QueueEntry:
    def opt_int(name: str) -> int | None:
        value = state.get(name)
        return int(value) if value else None

    return QueueEntry(
        entry_id=entry_id,
        queue=queue,
        fields=DispatchedEntry.model_validate_json(data),
        status=EntryStatus(state.get("status", EntryStatus.NEW.value)),
        status_by=state.get("status_by") or None,
        status_ts_ms=opt_int("status_ts_ms"),
        version=int(state.get("version", 0)),
        repeat_count=int(state.get("repeat_count", 0)),
        last_repeat_ts_ms=opt_int("last_repeat_ts_ms"),
    )
