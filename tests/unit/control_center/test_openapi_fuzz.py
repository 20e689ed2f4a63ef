"""schemathesis against the app's own OpenAPI document: no input gets a 5xx.

Bounded: a few dozen generated requests per operation, signed in as a supervisor (so writes
reach the workflow), against the in-memory queue, served by uvicorn in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from services.common.queue.memory import InMemoryQueue
from services.control_center.operators import add_operator
from services.control_center.workflow import Role
from tests.contract.queue import fields
from tests.threaded_control_center import serve_in_thread

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    operators = root / "ops.yaml"
    TOKEN["supervisor"] = add_operator(operators, "fuzz", Role.SUPERVISOR)
    with serve_in_thread(open_queue=InMemoryQueue, operators=operators, evidence_dir=root) as cc:
        for n in range(5):
            cc.run(cc.queue.append(fields(n), queue="wuzhen"))
        # The live stream never ends by itself; tests/unit/control_center/test_api.py covers it.
        yield schemathesis.openapi.from_url(f"{cc.url}/api/openapi.json").exclude(
            path="/api/stream"
        )


def test_no_input_gets_a_server_error(api_schema: Any) -> None:
    # Each operation's generated cases in turn (schemathesis.pytest.from_fixture does not
    # work with pytest 9, which dropped a private attribute it reads).
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    statuses: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN['supervisor']}"},
                checks=[not_a_server_error],
                timeout=10,
            )
            statuses.append(response.status_code)

        call()
    # Both answers and refusals were exercised.
    assert any(s < 300 for s in statuses)
    assert any(400 <= s < 500 for s in statuses)
