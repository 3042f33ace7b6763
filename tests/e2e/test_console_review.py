"""An approver reviews a pending change on the change itself: the candidate's tests, its rule-level diff and
its impact over recent decisions (read-only, no editor role needed), and comments on a rule or a table row;
the comments stay with the publication after it is decided. Real server, real Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc, ruleset_pb2, ruleset_pb2_grpc
from tests.e2e.server import ROOT, fact, free_port, metadata, start
from tests.e2e.test_console import CLAIM, browser, login, shot, sign_in, wait
from tests.e2e.test_console_sessions import console_up

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

__all__ = ["browser"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("review")
    port = free_port()
    server = start(tmp, "--console", f"127.0.0.1:{port}")
    with server.channel() as ch:
        d = decision_pb2_grpc.DecisionServiceStub(ch)
        for ref, amount in (("C-7788", 55000), ("C-1001", 57000), ("C-1002", 20000)):
            d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", {
                **CLAIM, "claim_ref": ref, "amount": amount})]), metadata=metadata("caller"))
        rs = ruleset_pb2_grpc.RulesetServiceStub(ch)
        claims = (ROOT / "rulesets/claims-triage.yaml").read_text().replace("claim.amount > 50000",
                                                                           "claim.amount > 60000")
        rs.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source=claims, note="raise the bar to 60,000"),
                          metadata=metadata("editor"))
        credit = (ROOT / "rulesets/credit-limit.yaml").read_text().replace('[">= 740"', '[">= 745"').replace(
            "[670..740)", "[670..745)")
        rs.PublishRuleset(ruleset_pb2.PublishRulesetRequest(source=credit, note="prime from 745"),
                          metadata=metadata("editor"))
    url = f"http://127.0.0.1:{port}"
    console_up(url)
    yield {"server": server, "url": url}
    assert server.stop() == 0


def test_an_approver_reviews_tests_diff_and_impact_and_comments_on_a_rule(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver = env["url"], browser
    sign_in(driver, url, "approver")
    driver.get(f"{url}/publications")
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#publications tbody tr")
               if "raise the bar to 60,000" in r.text)
    assert "open in the editor" not in row.text  # an approver is not sent to the editor
    row.find_element(By.CSS_SELECTOR, "a.review-link").click()
    wait(driver, lambda d: d.find_elements(By.ID, "pub-tests"))
    assert "7 passed, 0 failed" in driver.find_element(By.ID, "pub-tests").text
    change = driver.find_element(By.CSS_SELECTOR, "#diff li[data-target='rule high-risk']")
    assert "claim.amount > 60000" in change.text
    assert driver.find_element(By.ID, "impact-changed").text == "2"  # the 55,000 and 57,000 claims
    assert "route=senior-assessor" in driver.find_element(By.ID, "impact-result").text
    assert "needs editor" not in driver.page_source
    change.find_element(By.CSS_SELECTOR, "details summary").click()
    change.find_element(By.NAME, "text").send_keys("what about claims between 50k and 60k with injuries?")
    change.find_element(By.CSS_SELECTOR, "details button").click()
    wait(driver, lambda d: "#comments" in d.current_url)
    said = driver.find_element(By.CSS_SELECTOR, "#diff li[data-target='rule high-risk'] .review-comment").text
    assert "approver" in said and "with injuries?" in said
    driver.execute_script("document.getElementById('pub-diff').scrollIntoView()")
    shot(driver, "23-approver-reviews-a-change")
    driver.find_element(By.CSS_SELECTOR, "#publication input[name=note]").send_keys("checked the impact")
    driver.find_element(By.ID, "approve").click()
    wait(driver, lambda d: d.find_element(By.ID, "pub-status").text == "published")
    # decided: the comment stays with it, and no one may add another
    assert "with injuries?" in driver.find_element(By.ID, "comment-list").text
    assert not driver.find_elements(By.ID, "comment-text")
    driver.get(f"{url}/publications")
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#publications tbody tr")
               if "raise the bar to 60,000" in r.text)
    assert "published by approver" in row.text and "1 review comment" in row.text


def test_editors_comment_on_a_table_row_and_auditors_read_but_cannot_comment(env: dict[str, Any],
                                                                              browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url = env["url"]
    with httpx.Client(follow_redirects=False) as editor:
        assert login(editor, url, "editor").status_code == 303
        pubs = editor.get(f"{url}/publications").text
        pub_id = re.search(r'<tr id="(pub-[^"]+)">(?:(?!</tr>).)*prime from 745', pubs, re.S).group(1)  # type: ignore[union-attr]
        page = editor.get(f"{url}/publications/{pub_id}")
        assert page.status_code == 200 and 'data-target="table risk-band · row 1"' in page.text
        csrf = re.search(r'name="csrf" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        posted = editor.post(f"{url}/publications/{pub_id}/comment", data={
            "csrf": csrf, "target": "table risk-band · row 1", "text": "745 matches the bureau's new cut-off"})
        assert posted.status_code == 303
        empty = editor.post(f"{url}/publications/{pub_id}/comment", data={"csrf": csrf, "target": "", "text": " "})
        assert empty.status_code == 400 and "needs some text" in empty.text
    with httpx.Client(follow_redirects=False) as auditor:
        assert login(auditor, url, "auditor").status_code == 303
        page = auditor.get(f"{url}/publications/{pub_id}")
        assert page.status_code == 200 and "bureau&#39;s new cut-off" in page.text and "comment-text" not in page.text
        csrf = re.search(r'name="csrf" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        refused = auditor.post(f"{url}/publications/{pub_id}/comment", data={"csrf": csrf, "text": "x"})
        assert refused.status_code == 403
    driver = browser
    sign_in(driver, url, "approver")
    driver.get(f"{url}/publications/{pub_id}")
    row = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-target='table risk-band · row 1']"))[0]
    assert "editor" in row.text and "new cut-off" in row.text
    driver.execute_script("document.getElementById('pub-diff').scrollIntoView()")
    shot(driver, "24-comment-on-a-table-row")


def test_a_publication_page_that_does_not_exist_is_a_404(env: dict[str, Any]) -> None:
    with httpx.Client(follow_redirects=False) as approver:
        assert login(approver, env["url"], "approver").status_code == 303
        assert approver.get(f"{env['url']}/publications/pub-nope").status_code == 404

