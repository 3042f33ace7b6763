"""What analysts do to many at once: export any decision search as CSV or JSON Lines (streamed, with the
filters and each row's chain status), close selected escalations with one note, retry selected dead effects
with one note - each recorded per item with who did it. Real server on SQLite, real Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from adapters.infra.store.sql import SqlStore
from tests.e2e.server import fact, free_port, metadata, start
from tests.e2e.test_console import CLAIM, PAYMENT, browser, login, shot, sign_in, wait
from tests.e2e.test_console_sessions import console_up

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

__all__ = ["browser"]


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("bulk")
    port = free_port()
    server = start(tmp, "--console", f"127.0.0.1:{port}")
    with server.channel() as ch:
        d = decision_pb2_grpc.DecisionServiceStub(ch)
        claims = [d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", {
            **CLAIM, "claim_ref": ref, "amount": amount, "description": "=HYPERLINK(\"x\")"})]),
            metadata=metadata("caller")).decision for ref, amount in (("C-1", 55000), ("C-2", 20000))]
        payments = [d.Decide(decision_pb2.DecideRequest(ruleset="payment-approval", facts=[fact("payment", {
            **PAYMENT, "payment_ref": f"PAY-6{i}"})]), metadata=metadata("caller")).decision for i in range(5)]
    url = f"http://127.0.0.1:{port}"
    console_up(url)
    with httpx.Client(follow_redirects=False) as reviewer:  # two answered: their effects will be dead letters
        assert login(reviewer, url, "reviewer").status_code == 303
        for p in payments[:2]:
            csrf = _csrf(reviewer.get(f"{url}/escalations/{p.decision_id}").text)
            assert reviewer.post(f"{url}/escalations/{p.decision_id}/resolve", data={
                "csrf": csrf, "f_payment_ref": f"PAY-6{payments.index(p)}"}).status_code == 303
    store = SqlStore(server.db, migrate=False)
    yield {"server": server, "url": url, "claims": claims, "payments": payments, "store": store}
    store.close()
    assert server.stop() == 0


def test_a_search_exports_as_csv_and_json_lines_with_filters_and_chain_status(env: dict[str, Any],
                                                                                browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, store, driver = env["url"], env["store"], browser
    tampered = env["claims"][1].decision_id
    with store.writer.begin() as conn:
        conn.execute(sa.text("UPDATE decisions SET rule = '=cmd()' WHERE id = :id"), {"id": tampered})
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/decisions?ruleset=claims-triage")
    link = wait(driver, lambda d: d.find_elements(By.ID, "export-csv"))[0].get_attribute("href")
    assert link.endswith("/decisions/export.csv?ruleset=claims-triage")
    driver.find_element(By.ID, "export-jsonl").click()  # streamed into the page with a count, then saved
    assert wait(driver, lambda d: "done:" in d.find_element(By.ID, "export-progress").text and
                d.find_element(By.ID, "export-progress")).text == "done: 2 decisions, saved as a file"
    shot(driver, "31-export-links")
    cookies = {"baton_session": driver.get_cookie("baton_session")["value"]}
    with httpx.Client(cookies=cookies) as auditor:
        with auditor.stream("GET", link) as got:  # streamed, as a download
            assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
            assert "attachment" in got.headers["content-disposition"]
            text = "".join(got.iter_text())
        first, *lines, last = text.splitlines()
        assert first.startswith("# decisions exported by auditor") and "filters: ruleset=claims-triage" in first
        assert last == "# end: 2 decisions; 1 failing the hash check"  # the file is whole
        rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
        assert {r["id"] for r in rows} == {c.decision_id for c in env["claims"]}
        by_id = {r["id"]: r for r in rows}
        assert by_id[env["claims"][0].decision_id]["chain"] == "ok"
        assert by_id[tampered]["chain"].startswith("BROKEN: column rule differs")
        assert by_id[tampered]["rule"] == "'=cmd()"  # a spreadsheet shows it, never runs it
        jsonl = auditor.get(f"{url}/decisions/export.jsonl?outcome=escalated")
        head, *items, end = [json.loads(x) for x in jsonl.text.splitlines()]
        assert head["filters"] == {"outcome": "escalated"} and head["by"] == "auditor"
        assert end == {"end": True, "decisions": 5, "broken": 0}
        assert len(items) == 5 and all(i["chain"] == "ok" and i["ruleset"] == "payment-approval" for i in items)
        assert auditor.get(f"{url}/decisions/export.xlsx").status_code == 404
    with httpx.Client(follow_redirects=False) as reviewer:
        assert login(reviewer, url, "reviewer").status_code == 303
        assert reviewer.get(f"{url}/decisions/export.csv").status_code == 403


def test_selected_escalations_close_with_one_note_recorded_on_each(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver = env["url"], browser
    open_ids = [p.decision_id for p in env["payments"][2:]]
    sign_in(driver, url, "reviewer")
    driver.get(f"{url}/escalations")
    driver.find_element(By.ID, "bulk-close").click()  # nothing selected: said, nothing done
    wait(driver, lambda d: any("select at least one" in e.text for e in d.find_elements(By.ID, "bulk-error")))
    for esc in open_ids[:2]:
        driver.find_element(By.CSS_SELECTOR, f"input[name=pick][value='{esc}']").click()
    driver.find_element(By.ID, "bulk-close").click()  # no note: refused, the selection kept
    # until the refusal's own page is in (the one before also shows a bulk-error): then its checkboxes are read
    wait(driver, lambda d: any("say why" in e.text for e in d.find_elements(By.ID, "bulk-error")))
    assert wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"input[name=pick][value='{open_ids[0]}']")
                .is_selected())
    driver.find_element(By.ID, "bulk-note").send_keys("duplicates of PAY-60, paid once")
    driver.find_element(By.ID, "bulk-close").click()
    result = wait(driver, lambda d: d.find_elements(By.ID, "bulk-results"))[0].text
    assert "2 of 2 closed by reviewer" in result and result.count("declined") == 2
    shot(driver, "32-bulk-close")
    remaining = driver.find_element(By.ID, "escalations").text
    assert open_ids[2] in driver.page_source and open_ids[0] not in remaining
    for esc in open_ids[:2]:
        driver.get(f"{url}/escalations/{esc}")
        notes = driver.find_element(By.ID, "notes").text
        assert "declined" in notes and "duplicates of PAY-60, paid once" in notes and "reviewer" in notes
    row = env["store"].escalation(open_ids[2])
    assert row is not None and row["status"] == "open"


def test_selected_dead_effects_retry_with_one_note_recorded_on_each(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver, store = env["url"], browser, env["store"]
    effects = store.effects("pending")
    assert len(effects) == 2, "the two answered payments each left a notify-treasury effect"
    with store.writer.begin() as conn:
        conn.execute(sa.text("UPDATE outbox SET status = 'dead', attempts = 9, last_error = 'HTTP 503'"))
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/effects?status=dead")
    for e in effects:
        wait(driver, lambda d, e=e: d.find_elements(By.CSS_SELECTOR, f"input[name=pick][value='{e['id']}']"))[0].click()
    driver.find_element(By.ID, "bulk-note").send_keys("treasury endpoint is back")
    shot(driver, "33-bulk-retry")
    driver.find_element(By.ID, "bulk-retry").click()
    wait(driver, lambda d: "status=pending" in d.current_url)
    for e in effects:
        row = store.effect(e["id"])
        assert row is not None and (row["status"], row["retried_by"], row["attempts"]) == ("pending", "auditor", 0)
        driver.get(f"{url}/effects/{e['id']}")
        notes = driver.find_element(By.ID, "effect-notes").text
        assert "retried" in notes and "treasury endpoint is back" in notes and "auditor" in notes


def test_selected_escalations_resolve_with_the_answer_they_give_and_one_note(env: dict[str, Any],
                                                                             browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver, store = env["url"], browser, env["store"]
    last = env["payments"][4].decision_id  # the one the bulk close left open
    declined = env["payments"][2].decision_id
    sign_in(driver, url, "reviewer")
    driver.get(f"{url}/escalations")
    driver.find_element(By.CSS_SELECTOR, f"input[name=pick][value='{last}']").click()
    driver.find_element(By.ID, "bulk-note").send_keys("approved in the Friday batch")
    driver.find_element(By.ID, "bulk-resolve").click()
    result = wait(driver, lambda d: d.find_elements(By.ID, "bulk-results"))[0].text
    assert "1 of 1 resolved by reviewer" in result and "resolved: decided as" in result
    shot(driver, "32b-bulk-resolve")
    row = store.escalation(last)
    assert row is not None and (row["status"], row["resolved_by"]) == ("resolved", "reviewer")
    assert json.loads(row["answer"]) == {"payment_ref": "PAY-64", "approver": "reviewer"}  # fixed and identity
    notes = [(n["by"], n["kind"], n["text"]) for n in store.escalation_notes(last)]
    assert ("reviewer", "comment", "approved in the Friday batch") in notes
    with httpx.Client(follow_redirects=False) as reviewer:  # one no longer open is skipped, said so
        assert login(reviewer, url, "reviewer").status_code == 303
        csrf = _csrf(reviewer.get(f"{url}/escalations").text)
        again = reviewer.post(f"{url}/escalations/bulk", data={"csrf": csrf, "pick": [declined], "action": "resolve",
                                                                "note": "late"})
        assert "0 of 1 resolved" in again.text and "already declined" in again.text
