"""The editor's live errors, in Chromium, for two mistakes authors make: a fact type renamed under `facts:`
only (one error, at the renamed line, not one per use) and a `{` left open (at the brace, not lines later)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.server import ROOT
from tests.e2e.test_console import shot, sign_in, wait
from tests.e2e.test_console_dmn import browser, console

__all__ = ["browser", "console"]  # the fixtures, shared

pytestmark = pytest.mark.slow
SOURCE = (ROOT / "rulesets/claims-triage.yaml").read_text()


def problems(driver: Any, url: str, source: str, name: str) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/rulesets/edit/claims-triage")
    box = driver.find_element(By.ID, "source")
    driver.execute_script("arguments[0].value = arguments[1];", box, source)
    driver.find_element(By.ID, "validate").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#problem-list li.error"))
    shot(driver, name)
    return [(li.get_attribute("data-line"), li.text)
            for li in driver.find_elements(By.CSS_SELECTOR, "#problem-list li.error")]


def test_a_renamed_fact_type_is_one_error_at_its_line(console: str, browser: Any) -> None:
    sign_in(browser, console, "editor")
    renamed = SOURCE.replace("\n  claim:\n", "\n  claims:\n", 1)
    line = renamed[:renamed.index("  claims:\n")].count("\n") + 1
    [(at, text)] = problems(browser, console, renamed, "editor-renamed-type")
    assert at == str(line)
    assert "'claims' is declared here and used nowhere" in text


def test_a_brace_left_open_is_shown_at_the_brace(console: str, browser: Any) -> None:
    sign_in(browser, console, "editor")
    broken = SOURCE.replace("assert: {risk: {level: high}}", "assert: {risk: {level: high}", 1)
    line = broken[:broken.index("assert: {risk: {level: high}")].count("\n") + 1
    [(at, text)] = problems(browser, console, broken, "editor-open-brace")
    assert at == str(line)
    assert "this '{' is never closed" in text
