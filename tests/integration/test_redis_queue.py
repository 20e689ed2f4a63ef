import uuid

import pytest

from services.common.queue import ControlCenterQueue, open_queue
from tests.contract.queue import QueueContract, fields, run


class TestRedisStreamsQueue(QueueContract):
    @pytest.fixture(autouse=True)
    def _target(self, redis_url: str) -> None:
        self._url = redis_url
        self._prefix = f"test-{uuid.uuid4().hex[:12]}"

    def open(self) -> ControlCenterQueue:
        return open_queue(self._url, prefix=self._prefix)


def test_entries_survive_a_new_connection(redis_url: str, unique_name: str) -> None:
    async def scenario() -> None:
        writer = open_queue(redis_url, prefix=unique_name)
        await writer.append(fields(1), queue="hangzhou/xihu")
        await writer.close()
        reader = open_queue(redis_url, prefix=unique_name)
        (entry,) = await reader.read()
        assert entry.queue == "hangzhou/xihu"
        assert entry.to_feed_dict()["district"] == "town"
        await reader.close()

    run(scenario())
