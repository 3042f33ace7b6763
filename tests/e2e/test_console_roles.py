"""Roles a config names (``pii_roles: [dpo]``) are accepted for tokens and read personal data in clear in the
console; an unknown role in a token file stops the server at start, naming the entry. Real server, real
Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.doors.grpc.gen.baton.v1 import decision_pb2, decision_pb2_grpc
from tests.e2e.server import fact, free_port, start
from tests.e2e.test_console import PAYMENT, browser, shot, wait
from tests.e2e.test_console_sessions import console_up

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

__all__ = ["browser"]

TOKENS = """tokens:
  - {token: tok-caller-r, name: intake, roles: [caller]}
  - {token: tok-auditor-r, name: alex, roles: [auditor]}
  - {token: tok-dpo-r, name: dana, roles: [auditor, %s]}
"""


def sign_in_with(driver: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{url}/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    wait(driver, lambda d: "/login" not in d.current_url or d.find_elements(By.ID, "login-error"))


def test_an_unknown_role_stops_the_server_naming_the_entry(tmp_path: Path) -> None:
    (tmp_path / "baton.yaml").write_text("pii_roles: [dpo]\n")
    (tmp_path / "tokens.yaml").write_text(TOKENS % "dpp")
    with pytest.raises(RuntimeError) as refused:
        start(tmp_path, "--config", str(tmp_path / "baton.yaml"), "--tokens", str(tmp_path / "tokens.yaml"),
              auth=False)
    assert "tokens[2] (dana): unknown role 'dpp'" in str(refused.value)
    assert "dpo" in str(refused.value)  # the roles it may use, the config's among them
    (tmp_path / "inline.yaml").write_text("pii_roles: [dpo]\ntokens:\n"
                                          "  - {token: tok-dpo-inline, name: dana, roles: [auditor, dop]}\n")
    with pytest.raises(RuntimeError) as refused:
        start(tmp_path, "--config", str(tmp_path / "inline.yaml"), auth=False)
    assert "tokens.0 (dana): unknown role 'dop'" in str(refused.value)


def test_a_role_the_config_names_signs_in_and_reads_personal_data(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    (tmp_path / "baton.yaml").write_text("pii_roles: [dpo]\n")
    (tmp_path / "tokens.yaml").write_text(TOKENS % "dpo")
    port = free_port()
    url, driver = f"http://127.0.0.1:{port}", browser
    server = start(tmp_path, "--console", f"127.0.0.1:{port}", "--config", str(tmp_path / "baton.yaml"),
                   "--tokens", str(tmp_path / "tokens.yaml"), auth=False)
    try:
        with server.channel() as ch:
            decided = decision_pb2_grpc.DecisionServiceStub(ch).Decide(decision_pb2.DecideRequest(
                ruleset="payment-approval", facts=[fact("payment", PAYMENT)]),
                metadata=[("authorization", "Bearer tok-caller-r")]).decision
        console_up(url)
        iban = PAYMENT["beneficiary_iban"]
        sign_in_with(driver, url, "tok-dpo-r")
        assert "dana (auditor, dpo)" in driver.find_element(By.CSS_SELECTOR, "form.who span").text
        driver.get(f"{url}/decisions/{decided.decision_id}")
        assert iban in wait(driver, lambda d: d.find_elements(By.TAG_NAME, "main"))[0].text
        shot(driver, "22-dpo-reads-pii")
        sign_in_with(driver, url, "tok-auditor-r")
        driver.get(f"{url}/decisions/{decided.decision_id}")
        main = wait(driver, lambda d: d.find_elements(By.ID, "outcome")) and driver.find_element(By.TAG_NAME, "main")
        assert iban not in main.text and "payment_ref" in main.text  # masked for a role without it
    finally:
        assert server.stop() == 0
