"""What happened after a decision, on its page: a resolved escalation's original decision says who resolved
it and links to the decision it resumed into; an effect whose connector is not configured says so instead of
"pending" with a next try in the past. Real server (no effect connectors configured), real Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from tests.e2e.server import fact, free_port, metadata, start
from tests.e2e.test_console import PAYMENT, browser, login, shot, sign_in, wait
from tests.e2e.test_console_sessions import console_up

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

__all__ = ["browser"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("followups")
    port = free_port()
    server = start(tmp, "--console", f"127.0.0.1:{port}")
    with server.channel() as ch:
        escalated = decision_pb2_grpc.DecisionServiceStub(ch).Decide(decision_pb2.DecideRequest(
            ruleset="payment-approval", facts=[fact("payment", PAYMENT)]), metadata=metadata("caller")).decision
    url = f"http://127.0.0.1:{port}"
    console_up(url)
    with httpx.Client(follow_redirects=False) as reviewer:
        assert login(reviewer, url, "reviewer").status_code == 303
        page = reviewer.get(f"{url}/escalations/{escalated.decision_id}").text
        csrf = re.search(r'name="csrf" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        resolved = reviewer.post(f"{url}/escalations/{escalated.decision_id}/resolve",
                                 data={"csrf": csrf, "f_payment_ref": PAYMENT["payment_ref"]})
        assert resolved.status_code == 303
    yield {"server": server, "url": url, "escalated": escalated.decision_id}
    assert server.stop() == 0


def test_a_resolved_escalations_decision_links_to_what_it_resumed_into(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver = env["url"], browser
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/decisions/{env['escalated']}")
    state = wait(driver, lambda d: d.find_elements(By.ID, "escalation-state"))[0].text
    assert "resolved by reviewer" in state and "expects approval" not in state and "open in inbox" not in state
    shot(driver, "29-resolved-escalation-links-on")
    driver.find_element(By.ID, "resumed-into").click()
    wait(driver, lambda d: d.find_element(By.ID, "outcome").text == "decided")
    assert "carried from the escalated decision" in driver.find_element(By.ID, "trace").text


def test_an_effect_without_a_connector_says_so(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver = env["url"], browser
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/effects?status=pending")
    row = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#effects tbody tr"))[0]
    assert "notify-treasury" in row.text and "never: no connector configured" in row.text
    row.find_element(By.CSS_SELECTOR, "a").click()
    assert "no connector named notify-treasury" in wait(driver, lambda d: d.find_elements(By.ID, "effect-next"))[0].text
    assert "no connector configured" in driver.find_element(By.ID, "effect-unconfigured").text
    shot(driver, "30-effect-without-connector")
    driver.find_element(By.CSS_SELECTOR, "dl.facts a[href^='/decisions/']").click()
    badge = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "a.delivery"))[0]
    assert badge.text == "no connector configured"
