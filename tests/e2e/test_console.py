"""The console in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium; no
browser is downloaded), against the real server on SQLite with the example rulesets and stored
decisions. Screenshots of the main pages go to test-output/console/ (1366×768)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.doors.grpc.gen.baton.v1 import (
    decision_pb2,
    decision_pb2_grpc,
    escalation_pb2,
    escalation_pb2_grpc,
    ruleset_pb2,
    ruleset_pb2_grpc,
)
from engine.errors import CompileErrors
from engine.language.loader import load_ruleset
from tests.e2e.server import ROOT, TOKENS, fact, free_port, metadata, start
from tests.helpers import not_none

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = ROOT / "test-output" / "console"
HOSTILE = "<script>alert('pwned')</script> whiplash"
CLAIM = {"claim_ref": "C-7788", "amount": 55000, "policy_ref": "P-1", "description": HOSTILE,
         "customer_tier": "standard"}
PAYMENT = {"payment_ref": "PAY-501", "amount": 20000, "currency": "EUR", "beneficiary_iban": "GB29NWBK60161331926819",
           "initiated_by": "alice", "new_beneficiary": False}

if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):  # never a silent skip
    raise RuntimeError("the console's browser tests need Debian's chromium and chromium-driver: "
                       "sudo apt-get install -y chromium chromium-driver (make test installs them when it may)")


REVIEW_DEMO = """\
ruleset: review-demo
facts:
  case:
    ref: str
  review:
    ref: str
    score: {type: int, min: 0, max: 10}
    verdict: {enum: [accept, refuse]}
    hours: {type: number, min: 0}
    note: {type: str, optional: true}
input: [case]
rules:
  - name: ask
    when: exists case and not exists review
    then:
      escalate: {queue: reviews, reason: "a person scores it", expects: review}
  - name: done
    when: review.verdict == "accept"
    then:
      decide: {route: accepted, score: =review.score}
tests:
  - name: accepted after review
    given: {case: {ref: R-1}}
    human: {review: {ref: R-1, score: 7, verdict: accept, hours: 1.5}}
    expect: {decision: {route: accepted, score: 7}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("console")
    rulesets = tmp / "rulesets"
    shutil.copytree(ROOT / "rulesets", rulesets)
    (rulesets / "review-demo.yaml").write_text(REVIEW_DEMO)
    answers = json.loads((ROOT / "rulesets/demo-answers.json").read_text())
    answers["classify"]["fraud_signals"] = ["<img src=x onerror=alert(1)>", "<b>bold</b>"]  # hostile model answer
    (tmp / "answers.json").write_text(json.dumps(answers))
    port = free_port()
    server = start(tmp, "--console", f"127.0.0.1:{port}", "--answers", str(tmp / "answers.json"), rulesets=rulesets,
                   canned=False)
    with server.channel() as ch:
        d = decision_pb2_grpc.DecisionServiceStub(ch)
        decided = [d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", {
            **CLAIM, "claim_ref": ref, "amount": amount})]), metadata=metadata("caller")).decision
            for ref, amount in (("C-7788", 55000), ("C-1001", 57000), ("C-1002", 20000))]
        escalated = d.Decide(decision_pb2.DecideRequest(ruleset="payment-approval", facts=[fact("payment", PAYMENT)]),
                             metadata=metadata("caller")).decision
        source = (rulesets / "claims-triage.yaml").read_text().replace("claim.amount > 50000", "claim.amount > 99000")
        candidate = ruleset_pb2_grpc.RulesetServiceStub(ch).PublishRuleset(
            ruleset_pb2.PublishRulesetRequest(source=source, note="what-if candidate"), metadata=metadata("editor"))
    yield {"server": server, "url": f"http://127.0.0.1:{port}", "decided": decided, "escalated": escalated,
           "candidate": candidate.ruleset.version}
    assert server.stop() == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1366,768", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_window_size(1366, 768)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def wait(driver: Any, predicate: Any, timeout: float = 15) -> Any:
    """Until ``predicate`` holds; a page still loading (missing or replaced elements) is retried."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def attempt(d: Any) -> Any:
        try:
            return predicate(d)
        except WebDriverException as e:
            # ChromeDriver 156 reports an element whose page was replaced while it was read this way rather
            # than as stale: the same case, retried the same way
            if "does not belong to the document" in (e.msg or ""):
                return False
            raise

    return WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException,
                                                              StaleElementReferenceException)).until(attempt)


def sign_in(driver: Any, url: str, role: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{url}/login")
    driver.find_element(By.ID, "token").send_keys(TOKENS[role])
    driver.find_element(By.ID, "sign-in").click()
    wait(driver, lambda d: "/login" not in d.current_url or d.find_elements(By.ID, "login-error"))


def test_the_console_walkthrough(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, driver = env["url"], browser
    # a caller token cannot sign in
    sign_in(driver, url, "caller")
    assert "cannot sign in to the console" in driver.find_element(By.ID, "login-error").text
    shot(driver, "01-sign-in-refused")

    # the auditor finds a decision by fact text, opens its trace, replays it, and runs a what-if
    sign_in(driver, url, "auditor")
    wait(driver, lambda d: "/decisions" in d.current_url)
    driver.find_element(By.ID, "text").send_keys("C-7788")
    driver.find_element(By.ID, "search").click()
    wait(driver, lambda d: "text=C-7788" in d.current_url)
    rows = driver.find_elements(By.CSS_SELECTOR, "#decisions tbody tr")
    assert len(rows) == 1 and env["decided"][0].decision_id in rows[0].text
    shot(driver, "02-decisions-search")
    rows[0].find_element(By.CSS_SELECTOR, "a").click()
    assert wait(driver, lambda d: d.find_elements(By.ID, "outcome"))[0].text == "decided"
    assert driver.find_element(By.ID, "chain").text == "intact"
    page = driver.page_source
    assert "senior-for-high-risk-injury" in page and "classify" in page
    # hostile fact and model answer are text, never markup
    assert not driver.find_elements(By.XPATH, "//script[contains(., 'pwned')]")
    assert not driver.find_elements(By.CSS_SELECTOR, "main img")
    assert not driver.find_elements(By.XPATH, "//main//b[text()='bold']")
    assert "<script>alert('pwned')</script>" in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "03-decision-trace")
    driver.find_element(By.ID, "replay").click()
    assert "Replay: identical" in wait(driver, lambda d: d.find_elements(By.ID, "replay-result"))[0].text
    Select(driver.find_element(By.ID, "whatif-version")).select_by_value(env["candidate"])
    driver.find_element(By.ID, "whatif").click()
    result = wait(driver, lambda d: d.find_elements(By.ID, "whatif-result"))[0].text
    assert "changed" in driver.find_element(By.ID, "whatif-changed").text and "standard-queue" in result
    shot(driver, "04-what-if")
    Select(driver.find_element(By.ID, "why-rule")).select_by_visible_text("inactive-policy")
    driver.find_element(By.ID, "why").click()
    assert "did not fire" in wait(driver, lambda d: d.find_elements(By.ID, "why-result"))[0].text
    # an auditor cannot edit or approve
    driver.get(f"{url}/rulesets/edit/claims-triage")
    assert "needs editor" in driver.find_element(By.ID, "error-message").text

    # the editor breaks the ruleset (an inline error at the right line and column), fixes it, tests it,
    # previews its impact and submits it
    sign_in(driver, url, "editor")
    driver.get(f"{url}/rulesets/edit/claims-triage")
    source = driver.find_element(By.ID, "source")
    text = source.get_attribute("value")
    line = text[:text.index("claim.amount > 50000")].count("\n") + 1
    broken = text.replace("claim.amount > 50000", 'claim.amount > "lots"')
    column = broken.split("\n")[line - 1].index('> "lots"') + 1  # the compiler points at the comparison
    with pytest.raises(CompileErrors) as expected:
        load_ruleset(broken, "claims-triage.yaml")
    assert (expected.value.errors[0].where.line, expected.value.errors[0].where.column) == (line, column)
    driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
                          source, broken)
    wait(driver, lambda d: "type_mismatch" in d.find_element(By.ID, "problem-list").text)
    problem = driver.find_element(By.CSS_SELECTOR, "#problem-list li.error")
    assert problem.find_element(By.CSS_SELECTOR, ".pos").text == f"{line}:{column}"
    assert driver.find_elements(By.CSS_SELECTOR, "#gutter .bad")[0].get_attribute("textContent").strip() == str(line)
    shot(driver, "05-editor-inline-error")
    fixed = text.replace("claim.amount > 50000", "claim.amount > 60000")
    driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));",
                          source, fixed)
    wait(driver, lambda d: "Compiles" in d.find_element(By.ID, "problems").text)
    driver.find_element(By.ID, "run-tests").click()
    tests = wait(driver, lambda d: d.find_elements(By.ID, "test-results"))[0].text
    assert "7 passed, 0 failed" in tests and "8/8 rules fired (100%)" in driver.find_element(By.ID, "coverage").text
    driver.execute_script("document.getElementById('test-results').scrollIntoView()")
    shot(driver, "06-editor-tests")
    driver.find_element(By.ID, "impact").click()
    wait(driver, lambda d: d.find_elements(By.ID, "impact-changed"))
    assert driver.find_element(By.ID, "impact-changed").text == "2"  # the 55,000 and 57,000 claims
    impact = driver.find_element(By.ID, "impact-result").text
    assert "route=senior-assessor" in impact and "route=standard-queue" in impact
    assert driver.find_elements(By.CSS_SELECTOR, "#impact-result svg rect")
    driver.execute_script("document.getElementById('impact-result').scrollIntoView()")
    shot(driver, "07-impact-preview")
    driver.find_element(By.ID, "note").send_keys("raise the high-risk bar to 60,000")
    driver.find_element(By.ID, "submit").click()
    wait(driver, lambda d: "/publications" in d.current_url)
    assert "raise the high-risk bar to 60,000" in driver.find_element(By.ID, "publications").text

    # a second person approves; the new version decides the next request
    sign_in(driver, url, "approver")
    driver.get(f"{url}/publications")
    shot(driver, "08-publications")
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#publications tbody tr")
               if "raise the high-risk bar" in r.text)
    row.find_element(By.CSS_SELECTOR, "button.approve").click()
    wait(driver, lambda d: "published by approver" in d.find_element(By.ID, "publications").text)
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#publications tbody tr")
               if "raise the high-risk bar" in r.text)
    assert "published by approver" in row.text
    with env["server"].channel() as ch:
        after = decision_pb2_grpc.DecisionServiceStub(ch).Decide(decision_pb2.DecideRequest(
            ruleset="claims-triage", facts=[fact("claim", {**CLAIM, "claim_ref": "C-2000"})]),
            metadata=metadata("caller")).decision
    assert dict(after.decision) == {"route": "standard-queue"} and after.version != env["decided"][0].version

    # a reviewer resolves an escalation from the inbox, and the decision completes
    sign_in(driver, url, "reviewer")
    driver.get(f"{url}/escalations")
    assert "treasury-approvals" in driver.find_element(By.ID, "escalations").text
    wait(driver, lambda d: re.search(r"\d+m \d+s", d.find_element(By.CSS_SELECTOR, ".countdown").text))
    shot(driver, "09-escalations-inbox")
    driver.find_element(By.CSS_SELECTOR, "#escalations tbody a").click()
    # the approver is the signed-in reviewer and the payment is the escalated one: neither can be typed
    identity = wait(driver, lambda d: d.find_elements(By.ID, "identity-approver"))[0]
    assert identity.get_attribute("value") == "reviewer" and identity.get_attribute("readonly") is not None
    assert not driver.find_elements(By.NAME, "f_approver")
    fixed = driver.find_element(By.ID, "fixed-payment_ref")
    assert fixed.get_attribute("value") == "PAY-501" and fixed.get_attribute("readonly") is not None
    shot(driver, "10-escalation-answer")
    driver.find_element(By.ID, "resolve").click()
    resumed = wait(driver, lambda d: d.find_elements(By.ID, "resumed-outcome"))[0]
    assert resumed.text == "decided" and "release" in driver.find_element(By.ID, "resumed").text
    shot(driver, "10b-escalation-resolved")
    resumed_page = driver.find_element(By.ID, "resumed-link").get_attribute("href")
    sign_in(driver, url, "auditor")
    driver.get(resumed_page)  # the escalated decision's calls were answered from its record, not paid twice
    assert "carried from the escalated decision" in wait(driver, lambda d: d.find_elements(By.ID, "trace"))[0].text
    shot(driver, "10c-resumed-decision")
    driver.get(f"{url}/escalations?status=")
    assert "resolved" in driver.find_element(By.ID, "escalations").text

    # operations: the auditor verifies the whole log from the console (progress, result kept with the name)
    driver.get(f"{url}/ops")
    assert int(driver.find_element(By.ID, "ops-total").text) >= 6
    driver.find_element(By.ID, "verify").click()
    state = wait(driver, lambda d: "intact" in d.find_element(By.ID, "chain-state").text and
                 d.find_element(By.ID, "chain-state"))
    assert "decisions verified" in state.text and "verified by auditor" in driver.find_element(By.ID, "chain").text
    assert "By model group and model" in driver.find_element(By.ID, "cost-totals").text
    shot(driver, "11-operations")
    driver.get(f"{url}/rulesets")
    shot(driver, "12-rulesets")
    driver.get(f"{url}/rulesets/v/{after.version}")
    shot(driver, "13-ruleset-view")


def login(client: httpx.Client, url: str, role: str) -> httpx.Response:
    page = client.get(f"{url}/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    return client.post(f"{url}/login", data={"nonce": nonce.group(1), "token": TOKENS[role]})


def test_roles_csrf_and_headers(env: dict[str, Any]) -> None:
    url = env["url"]
    with httpx.Client(follow_redirects=False) as anon:
        assert anon.get(f"{url}/decisions").status_code == 303  # to the sign-in page
        # a deep link survives signing in; a link to another site does not
        deep = f"/decisions/{env['decided'][0].decision_id}?why=high-risk"
        to_login = anon.get(url + deep)
        assert to_login.status_code == 303 and to_login.headers["location"].startswith("/login?next=")
        form_page = anon.get(url + to_login.headers["location"]).text
        nonce = re.search(r'name="nonce" value="([^"]+)"', form_page).group(1)  # type: ignore[union-attr]
        signed = anon.post(f"{url}/login", data={"nonce": nonce, "token": TOKENS["auditor"],
                                                  "next": re.search(r'name="next" value="([^"]+)"',
                                                                    form_page).group(1)})  # type: ignore[union-attr]
        assert signed.status_code == 303 and signed.headers["location"] == deep
        anon.cookies.clear()
        form_page = anon.get(f"{url}/login?next=//evil.example/x").text
        assert 'name="next"' not in form_page
        assert login(anon, url, "caller").status_code == 403
        forged = anon.post(f"{url}/login", data={"nonce": "made-up", "token": TOKENS["auditor"]})
        assert forged.status_code == 403  # a sign-in form not issued to this browser
    with httpx.Client(follow_redirects=False) as auditor:
        r = login(auditor, url, "auditor")
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        page = auditor.get(f"{url}/decisions")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and page.headers["x-frame-options"] == "DENY"
        decision_id = env["decided"][0].decision_id
        # without the CSRF token, a state-changing request is refused even with a valid session
        assert auditor.post(f"{url}/decisions/{decision_id}/replay", data={}).status_code == 403
        token = re.search(r'name="csrf" content="([^"]+)"', page.text)
        assert token is not None
        replayed = auditor.post(f"{url}/decisions/{decision_id}/replay", data={"csrf": token.group(1)})
        assert replayed.status_code == 303  # post/redirect/get: a reload re-reads, never re-posts
        shown = auditor.get(url + replayed.headers["location"])
        assert shown.status_code == 200 and "Replay: identical" in shown.text
        assert "pending (not published)" in shown.text  # the what-if candidate is marked in the select
        # an auditor cannot approve or edit, whatever they send
        assert auditor.post(f"{url}/publications/x/approve", data={"csrf": token.group(1)}).status_code == 403
        assert auditor.get(f"{url}/rulesets/edit/claims-triage").status_code == 403
        assert auditor.post(f"{url}/api/validate", json={"source": "x"},
                            headers={"x-csrf-token": token.group(1)}).status_code == 403
        tampered = not_none(auditor.cookies.get("baton_session"), "the session cookie")
        auditor.cookies.set("baton_session", tampered[:-4] + "0000")
        assert auditor.get(f"{url}/decisions").status_code == 303  # a forged session is no session
    with httpx.Client(follow_redirects=False) as lead:  # editor and approver: still not their own change
        assert login(lead, url, "lead").status_code == 303
        page = lead.get(f"{url}/rulesets/edit/credit-limit")
        csrf = re.search(r'name="csrf" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        source = (ROOT / "rulesets/credit-limit.yaml").read_text().replace("[\">= 740\"", "[\">= 745\"").replace(
            "[670..740)", "[670..745)")
        submitted = lead.post(f"{url}/rulesets/edit/credit-limit?do=submit", data={"csrf": csrf, "source": source,
                                                                                   "note": "mine"})
        assert submitted.status_code == 303
        pubs = lead.get(f"{url}/publications").text
        pub_id = re.search(r'<tr id="(pub-[^"]+)">(?:(?!</tr>).)*mine', pubs, re.S).group(1)  # type: ignore[union-attr]
        own = lead.post(f"{url}/publications/{pub_id}/approve", data={"csrf": csrf})
        assert own.status_code == 403 and "cannot also approve" in own.text
        link = re.search(r'<tr id="' + pub_id + r'">(?:(?!</tr>).)*href="(/rulesets/diff\?[^"]+)"', pubs, re.S)
        assert link is not None
        diff = lead.get(url + link.group(1).replace("&amp;", "&")).text
        assert "risk-band" in diff and "row 1" in diff and "745" in diff  # what the approver reviews
        # what-if of the unsaved editor text against a stored decision
        draft = lead.post(f"{url}/rulesets/edit/claims-triage?do=whatif", data={
            "csrf": csrf, "source": (ROOT / "rulesets/claims-triage.yaml").read_text().replace(
                "claim.amount > 50000", "claim.amount > 99000"), "decision": env["decided"][0].decision_id})
        assert draft.status_code == 200 and 'id="whatif-result"' in draft.text and "this unsaved text" in draft.text
        assert 'id="whatif-changed"' in draft.text
        # a source beyond the limit is refused with 413 and a message, and the text stays in the editor
        huge = (ROOT / "rulesets/claims-triage.yaml").read_text() + "# " + "x" * 2_100_000 + " END-OF-PASTE\n"
        refused = lead.post(f"{url}/rulesets/edit/claims-triage?do=validate", data={"csrf": csrf, "source": huge})
        assert refused.status_code == 413 and "larger than" in refused.text and "END-OF-PASTE" in refused.text
        assert lead.post(f"{url}/rulesets/edit/claims-triage?do=validate",
                         data={"csrf": csrf, "source": "x" * 9_000_000}).status_code == 413


def test_a_reviewers_answer_records_the_signed_in_identity_whatever_the_form_says(env: dict[str, Any]) -> None:
    url = env["url"]
    with env["server"].channel() as ch:
        escalated = decision_pb2_grpc.DecisionServiceStub(ch).Decide(decision_pb2.DecideRequest(
            ruleset="payment-approval", facts=[fact("payment", {**PAYMENT, "payment_ref": "PAY-502"})]),
            metadata=metadata("caller")).decision
    assert escalated.outcome == decision_pb2.OUTCOME_ESCALATED
    with httpx.Client(follow_redirects=False) as reviewer:
        assert login(reviewer, url, "reviewer").status_code == 303
        page = reviewer.get(f"{url}/escalations/{escalated.decision_id}")
        csrf = re.search(r'name="csrf" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert 'name="f_approver"' not in page.text and 'id="identity-approver" value="reviewer"' in page.text
        changed = reviewer.post(f"{url}/escalations/{escalated.decision_id}/resolve",
                                data={"csrf": csrf, "f_payment_ref": "PAY-1"})  # not the escalated payment
        assert changed.status_code == 400 and "PAY-502" in changed.text
        forged = reviewer.post(f"{url}/escalations/{escalated.decision_id}/resolve",
                               data={"csrf": csrf, "f_payment_ref": "PAY-502", "f_approver": "<script>x</script>"})
        assert forged.status_code == 303
    with env["server"].channel() as ch:
        row = escalation_pb2_grpc.EscalationServiceStub(ch).GetEscalation(escalation_pb2.GetEscalationRequest(
            escalation_id=escalated.decision_id), metadata=metadata("reviewer")).escalation
        record = decision_pb2_grpc.DecisionServiceStub(ch).GetDecision(decision_pb2.GetDecisionRequest(
            decision_id=row.resumed_decision_id), metadata=metadata("auditor")).record
    human = [e for e in record["trace"] if e["kind"] == "fact" and e["source"] == "human"]
    assert [dict(h["values"]) for h in human] == [{"payment_ref": "PAY-502", "approver": "reviewer"}]
    assert row.resolved_by == "reviewer"
    with httpx.Client(follow_redirects=False) as reviewer:  # the page shows the answer; the decisions open
        assert login(reviewer, url, "reviewer").status_code == 303
        html = reviewer.get(f"{url}/escalations/{escalated.decision_id}").text
        assert 'id="given-answer"' in html and "PAY-502" in html and "countdown" not in html
        assert reviewer.get(f"{url}/decisions/{escalated.decision_id}").status_code == 200
        assert reviewer.get(f"{url}/decisions/{row.resumed_decision_id}").status_code == 200
        assert reviewer.get(f"{url}/decisions/{env['decided'][0].decision_id}").status_code == 403


def test_reviewers_assign_comment_and_decline_escalations(env: dict[str, Any], browser: Any) -> None:
    url = env["url"]
    with env["server"].channel() as ch:
        escalated = decision_pb2_grpc.DecisionServiceStub(ch).Decide(decision_pb2.DecideRequest(
            ruleset="payment-approval", facts=[fact("payment", {**PAYMENT, "payment_ref": "PAY-503"})]),
            metadata=metadata("caller")).decision
    esc = escalated.decision_id
    with httpx.Client(follow_redirects=False) as reviewer:
        assert login(reviewer, url, "reviewer").status_code == 303
        page = reviewer.get(f"{url}/escalations/{esc}").text
        csrf = re.search(r'name="csrf" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        assert reviewer.post(f"{url}/escalations/{esc}/assign", data={"csrf": csrf, "me": "1"}).status_code == 303
        assert reviewer.post(f"{url}/escalations/{esc}/comment",
                             data={"csrf": csrf, "text": "called the initiator"}).status_code == 303
        empty = reviewer.post(f"{url}/escalations/{esc}/close", data={"csrf": csrf, "reason": " "})
        assert empty.status_code == 400 and "say why" in empty.text
        assert reviewer.post(f"{url}/escalations/{esc}/close",
                             data={"csrf": csrf, "reason": "duplicate of PAY-502"}).status_code == 303
        page = reviewer.get(f"{url}/escalations/{esc}").text
        assert 'id="assigned-to">reviewer<' in page and "called the initiator" in page
        assert "declined" in page and "duplicate of PAY-502" in page and "countdown" not in page
        assert 'id="answer-form"' not in page  # no longer open: no answer, no SLA
        again = reviewer.post(f"{url}/escalations/{esc}/close", data={"csrf": csrf, "reason": "twice"})
        assert again.status_code == 400 and "already declined" in again.text
        inbox = reviewer.get(f"{url}/escalations?status=declined").text
        assert esc in inbox
    # in the browser: a deep link survives signing in, and the declined escalation reads as a record
    from selenium.webdriver.common.by import By

    driver = browser
    driver.delete_all_cookies()
    driver.get(f"{url}/escalations/{esc}")
    wait(driver, lambda d: d.find_elements(By.ID, "token"))[0].send_keys(TOKENS["reviewer"])
    driver.find_element(By.ID, "sign-in").click()
    wait(driver, lambda d: d.current_url.endswith(f"/escalations/{esc}"))
    notes = driver.find_element(By.ID, "notes").text
    assert "declined" in notes and "duplicate of PAY-502" in notes and "called the initiator" in notes
    # the beneficiary IBAN is marked pii and no role here may read it: masked in the context
    assert PAYMENT["beneficiary_iban"] not in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "15-escalation-declined")


def test_every_problem_of_an_answer_is_shown_at_once(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver = env["url"], browser
    with env["server"].channel() as ch:
        asked = decision_pb2_grpc.DecisionServiceStub(ch).Decide(decision_pb2.DecideRequest(
            ruleset="review-demo", facts=[fact("case", {"ref": "R-9"})]), metadata=metadata("caller")).decision
    assert asked.outcome == decision_pb2.OUTCOME_ESCALATED
    sign_in(driver, url, "reviewer")
    driver.get(f"{url}/escalations/{asked.decision_id}")
    assert driver.find_element(By.ID, "fixed-ref").get_attribute("value") == "R-9"  # known from the case
    driver.find_element(By.NAME, "f_score").send_keys("99")
    driver.find_element(By.NAME, "f_hours").send_keys("-2")
    driver.find_element(By.ID, "resolve").click()
    listed = wait(driver, lambda d: d.find_elements(By.ID, "answer-errors"))[0].text
    assert "99 is above the maximum" in listed and "-2 is below the minimum" in listed  # both, one submit
    assert driver.find_element(By.NAME, "f_score").get_attribute("value") == "99"  # what was typed stays
    shot(driver, "14-answer-problems")


def test_dead_effects_are_listed_inspected_and_retried_and_a_broken_log_is_flagged(env: dict[str, Any],
                                                                                  browser: Any) -> None:
    """Runs last: it tampers with the database."""
    import sqlalchemy as sa
    from selenium.webdriver.common.by import By

    from adapters.infra.store.sql import SqlStore

    url, store = env["url"], SqlStore(env["server"].db, migrate=False)
    waiting = store.effects("pending")
    assert waiting, "the resolved payments left notify-treasury effects, with no connector configured: waiting"
    victim = waiting[0]["id"]
    with store.writer.begin() as conn:  # as the worker leaves an effect that failed for a day
        conn.execute(sa.text("UPDATE outbox SET status = 'dead', attempts = 14, last_error = "
                             "'HTTP 503 from https://treasury.example/notify' WHERE id = :id"), {"id": victim})
    with httpx.Client(follow_redirects=False) as auditor:
        assert login(auditor, url, "auditor").status_code == 303
        ops = auditor.get(f"{url}/ops").text
        assert 'id="dead-effects">1<' in ops and "alarm" in ops
        listed = auditor.get(f"{url}/effects?status=dead").text
        assert victim in listed and "HTTP 503" in listed
        page = auditor.get(f"{url}/effects/{victim}").text
        assert 'id="effect-payload"' in page and "HTTP 503" in page
        csrf = re.search(r'name="csrf" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        decision = auditor.get(f"{url}/decisions/{victim.split(':')[0]}").text
        assert "dead letter" in decision
    driver = browser  # the auditor finds the dead letter from Operations and retries it
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/ops")
    driver.find_element(By.ID, "dead-effects").click()
    wait(driver, lambda d: victim in d.find_element(By.ID, "effects").text)
    shot(driver, "16-dead-letters")
    driver.find_element(By.CSS_SELECTOR, "#effects tbody a").click()
    assert "HTTP 503" in wait(driver, lambda d: d.find_elements(By.ID, "effect-error"))[0].text
    driver.find_element(By.ID, "retry").click()
    wait(driver, lambda d: d.find_element(By.ID, "effect-status").text == "pending")
    shot(driver, "16b-effect-retried")
    with httpx.Client(follow_redirects=False) as auditor:
        assert login(auditor, url, "auditor").status_code == 303
        csrf = re.search(r'name="csrf" content="([^"]+)"', auditor.get(f"{url}/ops").text).group(1)  # type: ignore[union-attr]
        row = store.effect(victim)
        assert row is not None and (row["status"], row["retried_by"], row["attempts"]) == ("pending", "auditor", 0)
        assert "retried" not in auditor.get(f"{url}/effects?status=dead").text.lower() or victim not in \
            auditor.get(f"{url}/effects?status=dead").text
        # one decision edited in the database: the whole-log verify finds it, and lists flag it
        target = env["decided"][1].decision_id
        with store.writer.begin() as conn:
            conn.execute(sa.text("UPDATE decisions SET outcome = 'no_decision' WHERE id = :id"), {"id": target})
        verified = auditor.post(f"{url}/ops/verify", data={"csrf": csrf}, headers={"accept": "text/html"})
        assert verified.status_code == 303
        ops = auditor.get(f"{url}/ops").text
        assert "BROKEN" in ops and target in ops and "verified by auditor" in ops
        listed = auditor.get(f"{url}/decisions").text
        assert 'id="chain-broken"' in listed and "broken-flag" in listed
    driver.get(f"{url}/decisions")
    assert "BROKEN" in wait(driver, lambda d: d.find_elements(By.ID, "chain-broken"))[0].text
    shot(driver, "17-broken-log")
    checks = store.chain_checks()
    assert checks[0]["by"] == "auditor" and checks[0]["broken_id"] == target
