"""Search over what is only inside a document: the stored text of each document sent with a decision, page by
page, finds the decision, the document and the page, with the words in context. Real server, real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from tests.e2e.server import fact, free_port, metadata, start
from tests.e2e.test_console import CLAIM, browser, shot, sign_in, wait
from tests.e2e.test_console_sessions import console_up
from tests.pdfs import make_pdf

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

__all__ = ["browser"]

PAGES = ["Claim form. Policy P-1. The claimant reports water damage in the kitchen.",
         "Page two. The   Washing\nMachine hose burst on 3 October; claim number CLM-2026-0777 was given by phone."]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("documents")
    port = free_port()
    server = start(tmp, "--console", f"127.0.0.1:{port}")
    with server.channel() as ch:
        d = decision_pb2_grpc.DecisionServiceStub(ch)
        with_pdf = d.Decide(decision_pb2.DecideRequest(
            ruleset="claims-triage", facts=[fact("claim", {**CLAIM, "claim_ref": "C-9001", "amount": 900})],
            documents=[decision_pb2.Document(name="claim-form.pdf", content=make_pdf(PAGES))]),
            metadata=metadata("caller")).decision
        without = d.Decide(decision_pb2.DecideRequest(
            ruleset="claims-triage", facts=[fact("claim", {**CLAIM, "claim_ref": "C-9002", "amount": 900})]),
            metadata=metadata("caller")).decision
    url = f"http://127.0.0.1:{port}"
    console_up(url)
    yield {"server": server, "url": url, "with_pdf": with_pdf.decision_id, "without": without.decision_id}
    assert server.stop() == 0


def test_words_only_inside_a_document_find_the_decision_and_the_page(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver = env["url"], browser
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/decisions")
    driver.find_element(By.ID, "text").send_keys("washing machine")  # not in any fact: the fact search misses it
    driver.find_element(By.ID, "search").click()
    wait(driver, lambda d: "text=washing" in d.current_url)
    assert env["with_pdf"] not in driver.find_element(By.ID, "decisions").text
    driver.find_element(By.ID, "text").clear()
    driver.find_element(By.ID, "doctext").send_keys("washing machine")
    driver.find_element(By.ID, "search").click()
    hits = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#doc-hits tbody tr"))
    assert len(hits) == 1 and env["with_pdf"] in hits[0].text and env["without"] not in hits[0].text
    assert hits[0].find_element(By.CSS_SELECTOR, ".page-no").text == "2"
    assert hits[0].find_element(By.CSS_SELECTOR, "mark").text == "Washing Machine"  # as written, spaces folded
    assert "claim-form.pdf" in hits[0].text
    shot(driver, "34-document-text-search")
    driver.get(f"{url}/decisions?doctext=CLM-2026-0777")
    assert "CLM-2026-0777" in wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#doc-hits mark"))[0].text
    driver.get(f"{url}/decisions?doctext=tumble+dryer")
    assert "No stored document page contains it" in driver.find_element(By.ID, "doc-hits").text
