"""The operator dashboard in a real Chromium (Playwright), against the real app on Redis."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import Browser, Page, expect

from services.common.queue import DispatchedEntry, EntryStatus
from tests.contract.queue import fields
from tests.e2e.conftest import ControlCenter

XSS = "<img src=x onerror=alert(1)>"
PLACES = [
    ("wuzhen", "xizha", "wuzhen-cam-01", "Ziyi Road / Longxiang Avenue", "red_light", "urgent"),
    (
        "hangzhou",
        "xihu",
        "hangzhou-cam-01",
        "Nanshan Road / Hubin Road",
        "illegal_parking",
        "normal",
    ),
    ("wuzhen", "dongzha", "wuzhen-cam-03", "Dongzha Bridge", "red_light", "high"),
    ("hangzhou", "shangcheng", "hangzhou-cam-02", "Yan'an Road", "illegal_parking", "low"),
]


def entry(n: int, **extra: object) -> DispatchedEntry:
    city, district, camera, location, kind, priority = PLACES[n % len(PLACES)]
    place = {
        "city": city,
        "district": district,
        "camera_id": camera,
        "location": location,
        "type": kind,
        "priority": priority,
        "violation_id": f"{camera}:{kind}:{n:06d}:1700000000000",
        "ts_ms": int(time.time() * 1000) - (40 - n) * 45_000,
    }
    return fields(n, **{**place, **extra})


def snapshot(cc: ControlCenter, e: DispatchedEntry) -> DispatchedEntry:
    """Give ``e`` evidence files on disk (a crop and the full frame beside it)."""
    folder = cc.evidence_dir / e.camera_id
    folder.mkdir(exist_ok=True)
    name = e.violation_id.replace(":", "_")
    crop = np.full((90, 120, 3), (40, 60, 200), np.uint8)
    cv2.rectangle(crop, (20, 20), (100, 70), (230, 230, 230), 3)
    cv2.imwrite(str(folder / f"{name}.jpg"), crop)
    cv2.imwrite(str(folder / f"{name}-scene.jpg"), cv2.resize(crop, (320, 180)))
    return e.model_copy(update={"snapshot": f"evidence/{e.camera_id}/{name}.jpg"})


def sign_in(page: Page, cc: ControlCenter, name: str) -> None:
    page.goto(cc.url + "/")
    page.fill("#token", cc.tokens[name])
    page.click("#signin button[type=submit]")
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)


def row(page: Page, violation_id: str) -> object:
    return page.locator(f'#rows tr[data-violation-id="{violation_id}"]')


def test_operators_work_the_queue_live(control_center: ControlCenter, browser: Browser) -> None:
    cc = control_center
    for n in range(12):
        cc.run(cc.queue.append(snapshot(cc, entry(n)), queue="city"))
    first, second = browser.new_context(), browser.new_context()
    dialogs: list[str] = []
    try:
        page, other = first.new_page(), second.new_page()
        for p in (page, other):
            p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            p.set_viewport_size({"width": 1500, "height": 860})

        # A wrong token is refused and the sign-in form says so.
        page.goto(cc.url + "/")
        page.fill("#token", "cb_0123456789abcdef_" + "x" * 43)
        page.click("#signin button[type=submit]")
        expect(page.locator("#signin-error")).to_have_text("unknown or revoked token")

        sign_in(page, cc, "li.wei")
        sign_in(other, cc, "zhang.min")
        newest = entry(11).violation_id
        expect(page.locator("#rows tr").first).to_have_attribute("data-violation-id", newest)

        # A violation dispatched while the operators watch arrives at the top, live.
        live = snapshot(cc, entry(12))
        cc.run(cc.queue.append(live, queue="city"))
        for p in (page, other):
            expect(p.locator("#rows tr").first).to_have_attribute(
                "data-violation-id", live.violation_id, timeout=5_000
            )

        # Open it (j selects the top row), see its evidence, acknowledge with the keyboard.
        page.keyboard.press("j")
        expect(page.locator("#detail")).to_be_visible()
        expect(page.locator("#d-evidence img")).to_have_count(2, timeout=5_000)
        page.fill("#d-note", "unit 7 on the way")
        page.locator("#d-note").blur()
        page.keyboard.press("a")
        expect(row(page, live.violation_id).locator(".st-acknowledged")).to_be_visible()
        # The other operator's dashboard shows the change within 2 s.
        expect(row(other, live.violation_id).locator(".st-acknowledged")).to_be_visible(
            timeout=2_000
        )
        expect(page.locator("#d-history li")).to_contain_text("li.wei")
        # The tiles follow the change too.
        expect(other.locator(".tile", has_text="acknowledged")).to_contain_text("1")

        # Redis holds the change, made by the token's owner.
        history = cc.run(cc.queue.history(live.violation_id))
        assert [(h.status, h.operator, h.note) for h in history] == [
            (EntryStatus.ACKNOWLEDGED, "li.wei", "unit 7 on the way")
        ]

        if os.environ.get("CITYBRAIN_SCREENSHOT"):
            # The README's picture: CITYBRAIN_SCREENSHOT=docs/img/dashboard.png
            page.screenshot(path=Path(os.environ["CITYBRAIN_SCREENSHOT"]))

        # An event field carrying HTML is shown as text and runs nothing.
        hostile = entry(13, location=XSS, extra_note=XSS)
        cc.run(cc.queue.append(hostile, queue="city"))
        cell = row(page, hostile.violation_id).locator("td").nth(4)
        expect(cell).to_have_text(XSS, timeout=5_000)
        row(page, hostile.violation_id).click()
        expect(page.locator("#d-fields")).to_contain_text(XSS)
        assert page.locator("#rows img, #d-fields img").count() == 0
        page.wait_for_timeout(500)
        assert dialogs == []

    finally:
        first.close()
        second.close()


def test_a_page_reconnects_and_loses_nothing(
    control_center: ControlCenter, browser: Browser
) -> None:
    cc = control_center
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, cc, "zhang.min")
        # Cut the page's stream as a server restart would: it reconnects by itself and
        # resumes after the last event it saw, so entries written meanwhile still arrive.
        context.set_offline(True)
        missed = [entry(n) for n in (20, 21, 22)]
        for e in missed:
            cc.run(cc.queue.append(e, queue="city"))
        context.set_offline(False)
        for e in missed:
            expect(row(page, e.violation_id)).to_have_count(1, timeout=10_000)
        assert page.locator("#rows tr").count() == len(missed)
    finally:
        context.close()
