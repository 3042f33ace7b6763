"""The decision page draws the decision as an SVG made on the server: input facts, then each round's rules
fired and what came of them (calls, facts, proposals, the winner marked), edges from matched facts to
firings; 200 firings stay readable (one box each, none overlapping). Real server, real Chromium."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc, ruleset_pb2, ruleset_pb2_grpc
from adapters.infra.store.sql import SqlStore
from tests.e2e.server import ROOT, fact, free_port, metadata, start
from tests.e2e.test_console import CLAIM, browser, shot, sign_in, wait
from tests.e2e.test_console_sessions import console_up

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

__all__ = ["browser"]

WIDE = "ruleset: wide-demo\nfacts:\n  item: {n: int}\ninput: [item]\nrules:\n" + "".join(
    f"  - name: rule-{i:03d}\n    priority: {i}\n    when: item.n > {i}\n    then: {{decide: {{route: r{i}}}}}\n"
    for i in range(200))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("graph")
    rulesets = tmp / "rulesets"
    shutil.copytree(ROOT / "rulesets", rulesets)
    (rulesets / "wide-demo.yaml").write_text(WIDE)
    port = free_port()
    server = start(tmp, "--console", f"127.0.0.1:{port}", rulesets=rulesets)
    with server.channel() as ch:
        d = decision_pb2_grpc.DecisionServiceStub(ch)
        claim = d.Decide(decision_pb2.DecideRequest(ruleset="claims-triage", facts=[fact("claim", CLAIM)]),
                         metadata=metadata("caller")).decision
        wide = d.Decide(decision_pb2.DecideRequest(ruleset="wide-demo", facts=[fact("item", {"n": 1000})]),
                        metadata=metadata("caller")).decision
        source = (rulesets / "claims-triage.yaml").read_text().replace("claim.amount > 50000", "claim.amount > 99000")
        candidate = ruleset_pb2_grpc.RulesetServiceStub(ch).PublishRuleset(ruleset_pb2.PublishRulesetRequest(
            source=source, note="what-if candidate"), metadata=metadata("editor")).ruleset.version
    url = f"http://127.0.0.1:{port}"
    console_up(url)
    yield {"server": server, "url": url, "claim": claim, "wide": wide, "candidate": candidate}
    assert server.stop() == 0


def test_the_decision_page_draws_rounds_rules_calls_and_the_winner(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver = env["url"], browser
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/decisions/{env['claim'].decision_id}")
    graph = wait(driver, lambda d: d.find_elements(By.ID, "decision-graph"))[0]
    columns = [t.text for t in graph.find_elements(By.CSS_SELECTOR, "text.column")]
    assert columns[0] == "input facts" and "round 1: rules fired" in columns
    assert any(c.startswith("round 2") for c in columns)  # the rounds, left to right
    fired = [t.text for t in graph.find_elements(By.CSS_SELECTOR, "g.fired text")]
    assert "senior-for-high-risk-injury" in fired and "classify-claim" in fired
    calls = [t.text for t in graph.find_elements(By.CSS_SELECTOR, "g.call text")]
    assert any("classify" in c and "ok" in c for c in calls)
    won = graph.find_elements(By.CSS_SELECTOR, "g.proposal.won")
    assert len(won) == 1 and won[0].find_element(By.TAG_NAME, "text").text == "★ decide · senior-for-high-risk-injury"
    tip = won[0].find_element(By.TAG_NAME, "title").get_attribute("textContent")
    assert tip == "decide proposed by senior-for-high-risk-injury (priority 10): the winner"
    assert graph.find_elements(By.CSS_SELECTOR, "path.edge")  # matched facts joined to their firings
    assert not driver.find_elements(By.CSS_SELECTOR, "#decision-graph script, #decision-graph foreignObject")
    driver.execute_script("document.getElementById('graph').scrollIntoView()")
    shot(driver, "35-decision-graph")


def test_two_hundred_firings_stay_readable(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    url, driver = env["url"], browser
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/decisions/{env['wide'].decision_id}")
    graph = wait(driver, lambda d: d.find_elements(By.ID, "decision-graph"))[0]
    boxes = driver.execute_script(
        "return [...document.querySelectorAll('#decision-graph g.fired rect')].map(r => r.getBBox())"
        ".map(b => [b.x, b.y, b.width, b.height])")
    assert len(boxes) == 200
    by_column: dict[float, list[tuple[float, float]]] = {}
    for x, y, _, h in boxes:
        by_column.setdefault(x, []).append((y, h))
    for stack in by_column.values():  # one under another: no two boxes overlap
        stack.sort()
        assert all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(stack))
    labels = set(driver.execute_script(
        "return [...document.querySelectorAll('#decision-graph g.fired text')].map(t => t.textContent)"))
    assert labels == {f"rule-{i:03d}" for i in range(200)}  # every name drawn whole (off-screen ones scroll)
    assert len(graph.find_elements(By.CSS_SELECTOR, "g.proposal.won")) == 1
    font = driver.execute_script("return getComputedStyle(document.querySelector('#decision-graph text')).fontSize")
    assert float(font.rstrip("px")) >= 11  # drawn at its size, never shrunk to fit
    driver.execute_script("document.getElementById('graph').scrollIntoView()")
    shot(driver, "36-decision-graph-200-rules")


def test_what_if_and_a_replay_divergence_draw_both_decisions(env: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, driver = env["url"], browser
    decision_id = env["claim"].decision_id
    sign_in(driver, url, "auditor")
    driver.get(f"{url}/decisions/{decision_id}")
    Select(driver.find_element(By.ID, "whatif-version")).select_by_value(env["candidate"])
    driver.find_element(By.ID, "whatif").click()
    new = wait(driver, lambda d: d.find_elements(By.ID, "whatif-new-graph"))[0]
    old = driver.find_element(By.ID, "whatif-stored-graph")
    assert "senior-for-high-risk-injury" in old.find_element(By.CSS_SELECTOR, "g.proposal.won").text
    assert new.find_element(By.CSS_SELECTOR, "g.proposal.won text").get_attribute("textContent") == \
        "★ decide · default-route"  # under 99,000 the claim is no longer high risk
    driver.execute_script("document.getElementById('whatif-result').scrollIntoView()")
    shot(driver, "39-what-if-graphs")
    store = SqlStore(env["server"].db, migrate=False)
    try:  # the stored trace edited: the replay diverges, and both decisions are drawn
        with store.writer.begin() as conn:
            conn.execute(sa.text("UPDATE decisions SET trace = replace(trace, '\"classify-claim\"', "
                                 "'\"made-up-rule\"') WHERE id = :id"), {"id": decision_id})
    finally:
        store.close()
    driver.get(f"{url}/decisions/{decision_id}")
    driver.find_element(By.ID, "replay").click()
    stored = wait(driver, lambda d: d.find_elements(By.ID, "replay-stored-graph"))[0]
    replayed = driver.find_element(By.ID, "replay-new-graph")
    assert "Replay diverges" in driver.find_element(By.ID, "replay-result").text
    fired_stored = stored.get_attribute("textContent")
    assert "made-up-rule" in fired_stored and "made-up-rule" not in replayed.get_attribute("textContent")
    assert "classify-claim" in replayed.get_attribute("textContent")
    driver.execute_script("document.getElementById('replay-result').scrollIntoView()")
    shot(driver, "40-replay-divergence-graphs")


def test_the_editors_what_if_of_unsaved_text_draws_both_decisions(env: dict[str, Any]) -> None:
    import re

    import httpx

    from tests.e2e.test_console import login

    url = env["url"]
    with httpx.Client(follow_redirects=False) as editor:
        assert login(editor, url, "editor").status_code == 303
        page = editor.get(f"{url}/rulesets/edit/claims-triage").text
        csrf = re.search(r'name="csrf" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        draft = (ROOT / "rulesets/claims-triage.yaml").read_text().replace("claim.amount > 50000",
                                                                          "claim.amount > 99000")
        shown = editor.post(f"{url}/rulesets/edit/claims-triage?do=whatif", data={
            "csrf": csrf, "source": draft, "decision": env["claim"].decision_id})
        assert shown.status_code == 200 and "this unsaved text" in shown.text
        assert 'id="whatif-stored-graph"' in shown.text and 'id="whatif-new-graph"' in shown.text
        new = shown.text[shown.text.index('id="whatif-new-graph"'):]
        assert "★ decide · default-route" in new[:new.index("</svg>")]
