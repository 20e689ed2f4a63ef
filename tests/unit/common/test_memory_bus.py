import pytest

from services.common.bus import open_bus
from services.common.bus.memory import InMemoryBus
from tests.contract.bus import BusContract


class TestInMemoryBus(BusContract):
    quiet_s = 0.5

    @pytest.fixture
    def bus(self) -> InMemoryBus:
        return InMemoryBus()


def test_same_key_same_partition() -> None:
    bus = InMemoryBus()
    for i in range(5):
        bus.publish("t", str(i).encode(), key=b"k")
    assert sorted(bus.end_offsets("t")) == [0, 0, 5]


@pytest.mark.parametrize(
    ("url", "error"),
    [("kafka://", "names no broker"), ("amqp://x", "scheme must be"), ("", "scheme must be")],
)
def test_bad_bus_url(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        open_bus(url)
