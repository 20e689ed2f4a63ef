import pytest

from services.common.queue import ControlCenterQueue, open_queue
from services.common.queue.memory import InMemoryQueue
from tests.contract.queue import QueueContract


class TestInMemoryQueue(QueueContract):
    @pytest.fixture(autouse=True)
    def _shared(self) -> None:
        # One store shared by every handle a test opens, like one Redis server.
        self._queue = InMemoryQueue()

    def open(self) -> ControlCenterQueue:
        return self._queue


def test_bad_queue_url() -> None:
    with pytest.raises(ValueError, match="scheme must be"):
        open_queue("postgres://x")
