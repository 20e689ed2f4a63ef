"""The operator dashboard in a real headless Chromium, against the real HTTP app."""

import asyncio
import os
import socket
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.common.queue.memory import InMemoryQueue
from services.control_center.http import create_app, start_server
from tests.contract.queue import fields
from tests.e2e.conftest import open_page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_operator_sees_live_entries_and_acknowledges(tmp_path: Path) -> None:
    async def main() -> None:
        queue = InMemoryQueue()
        extra = {"city": "wuzhen", "ts_ms": 1_700_000_000_000, "priority": "high"}
        await queue.append(fields(1, **extra, location="Ziyi Road"), queue="wuzhen")
        app = create_app(queue=queue, registry=CollectorRegistry(), evidence_dir=tmp_path)
        port = free_port()
        runner = await start_server(app, host="127.0.0.1", port=port)
        try:
            async with open_page(f"http://127.0.0.1:{port}/") as page:
                first = str(fields(1)["violation_id"])
                await page.wait_for(f"document.querySelector('tr[data-violation-id=\"{first}\"]')")
                assert await page.evaluate("document.querySelector('#conn').textContent") == "live"

                # A violation dispatched while the operator watches appears without a reload.
                await queue.append(fields(2, **extra, location="Longxiang Ave"), queue="wuzhen")
                second = str(fields(2)["violation_id"])
                await page.wait_for(f"document.querySelector('tr[data-violation-id=\"{second}\"]')")
                order = await page.evaluate(
                    "[...document.querySelectorAll('#rows tr')].map(r => r.dataset.violationId)"
                )
                assert order == [second, first]  # newest on top

                await page.evaluate(
                    f'document.querySelector(\'tr[data-violation-id="{first}"] '
                    "button[data-action=acknowledged]').click()"
                )
                await page.wait_for(
                    f"document.querySelector('tr[data-violation-id=\"{first}\"] .st-acknowledged')"
                )
                if os.environ.get("CITYBRAIN_SCREENSHOT"):
                    Path(os.environ["CITYBRAIN_SCREENSHOT"]).write_bytes(await page.screenshot())
            entry = await queue.get(first)
            assert (entry.status.value, entry.status_by) == ("acknowledged", "operator")
        finally:
            await runner.cleanup()

    asyncio.run(asyncio.wait_for(main(), timeout=90))
