"""The dashboard in a real headless Chromium against a real ``railcar server run``: log in,
read the rollout, find an instance and its history, change the policy and pause the rollout as
an admin; a read-only token sees everything and can change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from railcar.omaha.model import Event
from railcar.server.vocab import InstanceStatus
from tests.server.chromium import chromium
from tests.server.dashboard_fleet import APP, LiveServer, live_server, machine, omaha

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("dashboard")) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


def wait(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(driver, 30)


def find(driver: webdriver.Chrome, css: str) -> WebElement:
    return wait(driver).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def log_in(driver: webdriver.Chrome, server: LiveServer, token: str) -> None:
    driver.get(f"{server.base}/")  # redirects to /dashboard/
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    field = find(driver, "#token")
    field.send_keys(token)
    field.submit()
    find(driver, "#nav")


def assert_no_script_errors(driver: webdriver.Chrome) -> None:
    """No uncaught exception or console error from the page's own code (refused API calls
    show as network entries and are expected in some tests)."""
    logged: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    errors = [e for e in logged if e.get("source") != "network"]
    assert not [e for e in errors if e.get("level") == "SEVERE"], errors


def stat(card: WebElement, name: str) -> str:
    return card.find_element(By.CSS_SELECTOR, f'[data-stat="{name}"]').text


def counts(card: WebElement, caption: str) -> dict[str, int]:
    tables = card.find_elements(By.CSS_SELECTOR, "table")
    (table,) = [t for t in tables if t.find_element(By.TAG_NAME, "caption").text == caption]
    cells = table.find_elements(By.CSS_SELECTOR, "[data-count]")
    return {c.get_attribute("data-count") or "": int(c.text) for c in cells}


def test_overview_shows_the_rollout_as_the_api_does(
    server: LiveServer, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    log_in(browser, server, server.admin_token)
    assert browser.current_url.endswith("/dashboard/#/overview")
    card = find(browser, f'[data-group-id="{server.group_id}"]')
    stats = server.api(f"/apps/{APP}/groups/{server.group_id}/stats")
    assert stats["total_instances"] == 12 and stats["channel_version"] == "2.0.0"
    assert stat(card, "total_instances") == str(stats["total_instances"])
    assert stat(card, "channel_version") == stats["channel_version"]
    assert stat(card, "updates_in_progress") == str(stats["updates_in_progress"])
    assert stat(card, "updates_timed_out") == str(stats["updates_timed_out"])
    progress = card.find_element(By.CSS_SELECTOR, '[data-stat="rollout_progress"]')
    assert float(progress.get_attribute("data-value") or "nan") == stats["rollout_progress"]
    assert f"{stats['updated_to_channel_version']} of 12 on 2.0.0" in card.text
    assert counts(card, "Versions") == stats["version_breakdown"]
    assert counts(card, "Statuses") == stats["status_counts"]
    assert stats["status_counts"]["error"] == 1 and stats["version_breakdown"]["2.0.0"] == 1
    assert find(browser, "#role-badge").text == "admin"
    assert_no_script_errors(browser)
    shot = tmp_path / "overview.png"
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")


def test_search_an_instance_and_open_its_history(
    server: LiveServer, browser: webdriver.Chrome
) -> None:
    log_in(browser, server, server.admin_token)
    find(browser, 'nav a[data-section="instances"]').click()
    assert find(browser, "#instance-count").text == "Showing 1–12 of 12"
    search = find(browser, "#search-text")
    search.send_keys("web-02")
    search.submit()
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "instance-count"), "Showing 1–1 of 1")
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#instance-results tbody tr")
    assert len(rows) == 1 and "web-02" in rows[0].text and "Error" in rows[0].text
    rows[0].find_element(By.TAG_NAME, "a").click()
    title = find(browser, "#instance-title")
    assert title.text == machine(2)
    detail = server.api(f"/apps/{APP}/instances/{machine(2)}")
    history = find(browser, "#status-history tbody").find_elements(By.TAG_NAME, "tr")
    assert len(history) == len(detail["history"]) == 2
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in history] == [
        "Error",
        "Update granted",
    ]
    events = find(browser, "#instance-events tbody").text
    assert "Error during an update step" in events and "268435465" in events

    # The status filter: exactly the instances the API lists as downloading.
    browser.get(f"{server.base}/dashboard/#/apps/{APP}/instances")
    Select(find(browser, "#search-status")).select_by_visible_text("Downloading")
    find(browser, "#search-text").submit()
    api = server.api(f"/apps/{APP}/instances?status={int(InstanceStatus.DOWNLOADING)}")
    wanted = f"Showing 1–{api['total']} of {api['total']}"
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "instance-count"), wanted))
    assert machine(1) in find(browser, "#instance-results tbody").text


def test_instances_page_through(server: LiveServer, browser: webdriver.Chrome) -> None:
    log_in(browser, server, server.admin_token)
    browser.get(f"{server.base}/dashboard/#/apps/{APP}/instances?limit=5")
    seen: list[str] = []
    for shown in ("1–5", "6–10", "11–12"):
        wait(browser).until(
            ec.text_to_be_present_in_element((By.ID, "instance-count"), f"Showing {shown} of 12")
        )
        ids = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#instance-results td a")]
        seen += ids
        nxt = browser.find_elements(By.CSS_SELECTOR, '.pager a[rel="next"]')
        if shown == "11–12":
            assert not nxt
        else:
            nxt[0].click()
    assert sorted(seen) == sorted(machine(n) for n in range(12))
    browser.find_element(By.CSS_SELECTOR, '.pager a[rel="prev"]').click()
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "instance-count"), "Showing 6–10 of 12")
    )


def test_auto_refresh_shows_a_node_reporting(server: LiveServer, browser: webdriver.Chrome) -> None:
    log_in(browser, server, server.admin_token)
    browser.get(f"{server.base}/dashboard/#/apps/{APP}/instances/{machine(3)}")
    assert find(browser, "#instance-title").text == machine(3)
    assert_no_script_errors(browser)
    assert "Download started" not in find(browser, "#instance-events").text
    assert find(browser, "#auto-refresh").is_selected()
    omaha(server.base, 3, "1.0.0", Event(13, 1), check=False)
    # Nothing reloads the page: the 10 s refresh brings the event in.
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "instance-events"), "Download started")
    )
    assert find(browser, "#instance-title").text == machine(3)
    assert_no_script_errors(browser)


def test_admin_renames_an_instance(server: LiveServer, browser: webdriver.Chrome) -> None:
    log_in(browser, server, server.admin_token)
    browser.get(f"{server.base}/dashboard/#/apps/{APP}/instances/{machine(4)}")
    alias = find(browser, "#alias-input")
    assert alias.get_attribute("value") == "web-04"
    alias.clear()
    alias.send_keys("db-04")
    alias.submit()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "Alias saved."))
    assert server.api(f"/apps/{APP}/instances/{machine(4)}")["alias"] == "db-04"
    browser.get(f"{server.base}/dashboard/#/apps/{APP}/instances?search=db-04")
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "instance-count"), "Showing 1–1 of 1")
    )
    assert machine(4) in find(browser, "#instance-results tbody").text


def policy_of(server: LiveServer) -> dict[str, Any]:
    policy: dict[str, Any] = server.api(f"/apps/{APP}/groups/{server.group_id}")["policy"]
    return policy


def test_admin_changes_the_policy_and_pauses_the_rollout(
    server: LiveServer, browser: webdriver.Chrome
) -> None:
    log_in(browser, server, server.admin_token)
    find(browser, f'[data-group-id="{server.group_id}"] h3 a').click()
    field = find(browser, "#policy-max_updates_per_period")
    field.clear()
    field.send_keys("7")
    zone = find(browser, "#policy-timezone")
    zone.clear()
    zone.send_keys("Europe/Berlin")
    find(browser, "#policy-office_hours").click()
    find(browser, "#policy-save").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "Policy saved."))
    policy = policy_of(server)
    assert policy["max_updates_per_period"] == 7
    assert policy["timezone"] == "Europe/Berlin" and policy["office_hours"] is True

    find(browser, "#pause-toggle").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "Rollout paused."))
    assert policy_of(server) == {**policy, "updates_enabled": False}
    assert find(browser, "#pause-state").text.startswith("Rollout paused")
    assert find(browser, "#pause-toggle").text == "Resume rollout"
    assert not find(browser, "#policy-updates_enabled").is_selected()

    find(browser, "#pause-toggle").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "Rollout resumed."))
    assert policy_of(server) == policy

    # Point the channel back at 1.0.0 and forward again, from the packages page.
    find(browser, 'nav a[data-section="packages"]').click()
    form = find(browser, f'[data-channel-id="{server.channel_id}"]')
    Select(form.find_element(By.TAG_NAME, "select")).select_by_visible_text("1.0.0")
    form.find_element(By.TAG_NAME, "button").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "serves 1.0.0"))
    channel = server.api(f"/apps/{APP}/channels/{server.channel_id}")
    assert channel["package_version"] == "1.0.0"
    form = find(browser, f'[data-channel-id="{server.channel_id}"]')
    Select(form.find_element(By.TAG_NAME, "select")).select_by_visible_text("2.0.0")
    form.find_element(By.TAG_NAME, "button").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "serves 2.0.0"))
    channel = server.api(f"/apps/{APP}/channels/{server.channel_id}")
    assert channel["package_version"] == "2.0.0"

    # A value the server refuses is reported, and nothing changes.
    browser.get(f"{server.base}/dashboard/#/apps/{APP}/groups/{server.group_id}")
    zone = find(browser, "#policy-timezone")
    zone.clear()
    zone.send_keys("Mars/Olympus")
    find(browser, "#policy-save").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "Mars/Olympus"))
    assert "notice-error" in (find(browser, "#notice").get_attribute("class") or "")
    assert policy_of(server) == policy


def test_unknown_token_is_refused(server: LiveServer, browser: webdriver.Chrome) -> None:
    browser.get(f"{server.base}/dashboard/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    field = find(browser, "#token")
    field.send_keys("rct_not-a-token")
    field.submit()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "login-error"), "(401)"))
    assert not browser.find_element(By.ID, "nav").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('railcar.token')") is None


def test_read_only_token_sees_everything_and_changes_nothing(
    server: LiveServer, browser: webdriver.Chrome
) -> None:
    before = policy_of(server)
    channel = server.api(f"/apps/{APP}/channels/{server.channel_id}")
    log_in(browser, server, server.reader_token)
    assert find(browser, "#role-badge").text == "read-only"
    card = find(browser, f'[data-group-id="{server.group_id}"]')
    assert stat(card, "total_instances") == "12"

    card.find_element(By.CSS_SELECTOR, "h3 a").click()
    form = find(browser, "#policy-form")
    assert "Read-only token" in form.text
    fields = form.find_elements(By.CSS_SELECTOR, "input")
    assert len(fields) == 7 and not any(f.is_enabled() for f in fields)
    assert not browser.find_elements(By.CSS_SELECTOR, "#policy-save, #pause-toggle")
    assert find(browser, "#pause-state").text == "Rollout running."

    # Forcing the form open anyway: the server refuses and the page says why.
    browser.execute_script(
        "const f = document.getElementById('policy-form');"
        "f.querySelector('fieldset').disabled = false;"
        "f.elements.max_updates_per_period.value = '1';"
        "f.requestSubmit();"
    )
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "(403)"))
    assert "read-only" in find(browser, "#notice").text
    assert policy_of(server) == before

    find(browser, 'nav a[data-section="packages"]').click()
    channels = find(browser, "#channels-title + .table-wrap table")
    assert "stable" in channels.text and "2.0.0" in channels.text
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-channel-id]")
    browser.get(f"{server.base}/dashboard/#/apps/{APP}/instances/{machine(0)}")
    assert find(browser, "#instance-title").text == machine(0)
    assert not browser.find_elements(By.ID, "alias-form")
    find(browser, 'nav a[data-section="activity"]').click()
    assert "Rollout started" in find(browser, "#activity-list table").text
    assert server.api(f"/apps/{APP}/channels/{server.channel_id}") == channel
    assert_no_script_errors(browser)
