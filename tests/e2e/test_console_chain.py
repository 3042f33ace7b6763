"""Chain status everywhere an auditor looks, after one stored decision is edited in the database: rows whose
stored record no longer matches its hash are marked in lists, searches and impact examples before anyone
runs verify; finding one verifies the whole log, after which every page carries one banner; the Operations
tile agrees with the verification it shows. Real server on SQLite, real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc, ruleset_pb2, ruleset_pb2_grpc
from adapters.infra.store.sql import SqlStore
from tests.e2e.server import ROOT, fact, free_port, metadata, start
from tests.e2e.test_console import CLAIM, PAYMENT, browser, shot, sign_in, wait
from tests.e2e.test_console_sessions import console_up

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

__all__ = ["browser"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("chain")
    port = free_port()
    server = start(tmp, "--console", f"127.0.0.1:{port}")
    with server.channel() as ch:
        d = decision_pb2_grpc.DecisionServiceStub(ch)
        decided = [d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", {
            **CLAIM, "claim_ref": ref, "amount": amount})]), metadata=metadata("caller")).decision
            for ref, amount in (("C-7788", 55000), ("C-1001", 57000), ("C-1002", 20000))]
        escalated = d.Decide(decision_pb2.DecideRequest(ruleset="payment-approval", facts=[fact(
            "payment", PAYMENT)]), metadata=metadata("caller")).decision
        source = (ROOT / "rulesets/claims-triage.yaml").read_text().replace("claim.amount > 50000",
                                                                           "claim.amount > 60000")
        pub = ruleset_pb2_grpc.RulesetServiceStub(ch).PublishRuleset(ruleset_pb2.PublishRulesetRequest(
            source=source, note="raise the bar"), metadata=metadata("editor"))
    url = f"http://127.0.0.1:{port}"
    console_up(url)
    store = SqlStore(server.db, migrate=False)
    yield {"server": server, "url": url, "decided": decided, "escalated": escalated, "store": store,
           "publication": pub.publication.id}
    store.close()
    assert server.stop() == 0


def test_an_edited_decision_is_flagged_everywhere_and_the_log_banner_follows(env: dict[str, Any],
                                                                             browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver, store = env["url"], browser, env["store"]
    target = env["decided"][1].decision_id
    # verified intact first: the Operations tile says so
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/ops")
    driver.find_element(By.ID, "verify").click()
    wait(driver, lambda d: "intact" in d.find_element(By.ID, "chain-state").text)
    assert driver.find_element(By.ID, "chain-tile-state").text == "intact"
    assert not driver.find_elements(By.ID, "chain-broken")

    with store.writer.begin() as conn:  # someone edits a stored decision in the database
        conn.execute(sa.text("UPDATE decisions SET outcome = 'no_decision' WHERE id = :id"), {"id": target})

    # the Operations page still shows the last (intact) verification; verifying again from it turns the
    # tile, the result and the banner BROKEN together, without a reload
    driver.get(f"{url}/ops")
    assert driver.find_element(By.ID, "chain-tile-state").text == "intact"
    driver.find_element(By.ID, "verify").click()
    wait(driver, lambda d: "BROKEN" in d.find_element(By.ID, "chain-state").text)
    assert driver.find_element(By.ID, "chain-tile-state").text == "BROKEN"
    assert "intact" not in driver.find_element(By.CSS_SELECTOR, ".tiles").text
    assert target in driver.find_element(By.ID, "chain-broken").text
    shot(driver, "25-ops-verify-broken")

    # every page carries the banner; the edited row is marked in the list and in a search
    for page in ("/rulesets", "/publications", "/escalations", f"/decisions/{env['decided'][0].decision_id}"):
        driver.get(url + page)
        assert "The decision log is BROKEN" in driver.find_element(By.ID, "chain-broken").text, page
        assert len(driver.find_elements(By.CSS_SELECTOR, ".banner")) == 1, page
    assert "the log is broken at decision" in driver.find_element(By.ID, "chain-log").text
    assert driver.find_element(By.ID, "chain").text == "intact"  # that one's own hash does check out
    driver.get(f"{url}/decisions?text=C-1001")
    row = driver.find_element(By.CSS_SELECTOR, "#decisions tbody tr")
    assert target in row.text and row.find_elements(By.CSS_SELECTOR, ".broken-flag")
    shot(driver, "26-search-flags-the-edited-row")


def test_rows_that_fail_their_hash_are_flagged_before_anyone_verifies(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver, store = env["url"], browser, env["store"]
    escalated = env["escalated"].decision_id
    with store.writer.begin() as conn:  # no verification has seen this one: the last one named another
        conn.execute(sa.text("DELETE FROM chain_checks"))
        conn.execute(sa.text("UPDATE decisions SET rule = 'made-up' WHERE id = :id"), {"id": escalated})
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/escalations")
    banner = driver.find_element(By.ID, "rows-broken").text
    assert "2 decisions on this page fail the hash check" not in banner  # one escalation is listed here
    assert "1 decision on this page fails the hash check" in banner
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#escalations tbody tr") if "treasury" in r.text)
    assert row.find_elements(By.CSS_SELECTOR, ".broken-flag")
    shot(driver, "27-escalations-flag-before-verify")
    # finding it started a whole-log verification; once recorded, every page says the log is broken
    driver.get(f"{url}/rulesets")
    wait(driver, lambda d: d.refresh() or "The decision log is BROKEN" in d.find_element(By.ID, "chain-broken").text)
    checks = store.chain_checks(1)
    assert checks[0]["by"].startswith("console (automatic") and checks[0]["problem"]

    # the impact of a pending change marks the edited decision among its examples
    sign_in(driver, url, "approver")
    driver.get(f"{url}/publications/{env['publication']}")
    warning = wait(driver, lambda d: d.find_elements(By.ID, "impact-tampered"))[0].text
    assert "1 of these decisions fails the hash check" in warning
    flagged = driver.find_elements(By.CSS_SELECTOR, "#impact-result .broken-flag")
    assert len(flagged) == 1 and env["decided"][1].decision_id in flagged[0].find_element(
        By.XPATH, "preceding-sibling::a[1]").get_attribute("href")
    driver.execute_script("document.getElementById('impact-result').scrollIntoView()")
    shot(driver, "28-impact-example-flagged")
