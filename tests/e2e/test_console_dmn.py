"""DMN in the console, in Chromium: an editor uploads a DMN model and lands in the editor with the imported
YAML and its conversion notes; a bad model is refused naming the element; a ruleset version downloads as
DMN 1.5, with what DMN cannot hold listed in the file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ROOT, free_port, start
from tests.e2e.test_console import browser, login, shot, sign_in, wait

__all__ = ["browser"]  # the module's fixture, shared

pytestmark = pytest.mark.slow
TCK = ROOT / "tests/dmn/tck/compliance-level-2"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("console-dmn")
    port = free_port()
    server = start(tmp, "--console", f"127.0.0.1:{port}")
    yield f"http://127.0.0.1:{port}"
    assert server.stop() == 0


def model(name: str) -> Path:
    return next((TCK / name).glob("*.dmn"))


def test_an_uploaded_model_lands_in_the_editor_with_its_notes(console: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, console, "editor")
    browser.get(f"{console}/rulesets")
    browser.find_element(By.ID, "dmn-upload").click()
    browser.find_element(By.ID, "dmn-file").send_keys(str(model("0004-simpletable-U")))
    browser.find_element(By.ID, "dmn-import").click()
    wait(browser, lambda d: d.find_elements(By.ID, "source"))
    shot(browser, "dmn-imported")
    source = browser.find_element(By.ID, "source").get_attribute("value")
    assert source.startswith("# ") or "ruleset:" in source
    assert re.search(r"^tables:", source, re.M)
    notes = browser.find_element(By.ID, "conversion-notes").text
    assert "imported from 0004-simpletable-U.dmn" in notes
    assert not browser.find_elements(By.CSS_SELECTOR, "#problems .error")  # it compiles as imported


def test_a_model_baton_cannot_express_is_refused_naming_the_element(console: str, browser: Any,
                                                                     tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    text = model("0004-simpletable-U").read_text(encoding="utf-8-sig")
    broken = re.sub(r"<(\w+:)?text>([^<]*)</(\w+:)?text>", r"<\1text>for x in [1,2] return x</\3text>", text,
                    count=1)
    bad = tmp_path / "bad.dmn"
    bad.write_text(broken)
    sign_in(browser, console, "editor")
    browser.get(f"{console}/rulesets/dmn")
    browser.find_element(By.ID, "dmn-file").send_keys(str(bad))
    browser.find_element(By.ID, "dmn-import").click()
    error = wait(browser, lambda d: d.find_elements(By.ID, "dmn-error"))[0].text
    shot(browser, "dmn-refused")
    assert error.startswith("bad.dmn: ")


def test_a_ruleset_version_downloads_as_dmn(console: str) -> None:
    with httpx.Client(follow_redirects=False) as client:
        login(client, console, "auditor")
        page = client.get(f"{console}/rulesets")
        version = re.search(r'href="/rulesets/v/([0-9a-f]{64})">[0-9a-f]+</a>', page.text)
        assert version is not None
        versions = re.findall(r"<td>([a-z0-9-]+)</td><td class=\"mono\"><a href=\"/rulesets/v/([0-9a-f]{64})\"",
                              page.text)
        credit = next(v for name, v in versions if name == "credit-limit")
        assert f'href="/rulesets/v/{credit}/dmn"' in client.get(f"{console}/rulesets/v/{credit}").text
        got = client.get(f"{console}/rulesets/v/{credit}/dmn")
    assert got.status_code == 200
    assert got.headers["content-disposition"].startswith('attachment; filename="credit-limit-')
    assert "https://www.omg.org/spec/DMN/20230324/MODEL/" in got.text
    assert "<decisionTable" in got.text or ":decisionTable" in got.text
    assert "Not exported from credit-limit@" in got.text  # its rules and actions, listed rather than dropped
