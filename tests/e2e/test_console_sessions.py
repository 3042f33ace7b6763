"""Console sessions are kept server-side: signing out ends the session at once (the same cookie is sent to
the sign-in page, which says why), and so do the idle and absolute timeouts from the config and a token
removed or rotated in the token file. Real server on SQLite, real Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from adapters.infra.store.sql import SqlStore
from tests.e2e.server import TOKENS, free_port, start, write_tokens
from tests.e2e.test_console import browser, login, shot, sign_in, wait
from tests.helpers import wait_until

pytestmark = pytest.mark.slow  # a real server, browser or broker per module

__all__ = ["browser"]  # the Chromium fixture, shared with test_console


def console_up(url: str) -> None:
    """Until the console answers (it starts just after gRPC says it is listening)."""
    def answers() -> bool:
        try:
            httpx.get(f"{url}/login", timeout=2)
            return True
        except httpx.TransportError:
            return False

    wait_until(answers, 30, f"the console at {url} to answer")


def _config(tmp: Path) -> Path:
    path = tmp / "baton.yaml"
    path.write_text("console_secret: a-fixed-secret-so-sessions-outlive-a-restart\n"
                    "console_sessions: {idle_s: 600, absolute_s: 7200}\n")
    return path


def test_signing_out_timeouts_and_a_rotated_token_end_the_session(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    port = free_port()
    url, driver = f"http://127.0.0.1:{port}", browser
    server = start(tmp_path, "--console", f"127.0.0.1:{port}", "--config", str(_config(tmp_path)))
    store = SqlStore(server.db, migrate=False)
    console_up(url)
    try:
        # sign out in the browser: the cookie it had is refused from then on, with the reason
        sign_in(driver, url, "auditor")
        wait(driver, lambda d: "/decisions" in d.current_url)
        cookie = driver.get_cookie("baton_session")["value"]
        driver.find_element(By.CSS_SELECTOR, "form.who button").click()
        assert "You signed out" in wait(driver, lambda d: d.find_elements(By.ID, "session-ended"))[0].text
        with httpx.Client(follow_redirects=False, cookies={"baton_session": cookie}) as stolen:
            again = stolen.get(f"{url}/decisions")
            assert again.status_code == 303 and again.headers["location"] == "/login?next=%2Fdecisions&why=signed_out"
            assert stolen.post(f"{url}/ops/verify", data={}).status_code == 401
        driver.add_cookie({"name": "baton_session", "value": cookie, "path": "/"})
        driver.get(f"{url}/decisions")
        wait(driver, lambda d: "/login" in d.current_url)
        assert "You signed out" in driver.find_element(By.ID, "session-ended").text
        shot(driver, "20-signed-out-cookie-refused")

        # idle and absolute timeouts, as configured (10 min, 2 h): the session's row moved into the past
        for column, why, said in (("seen_at", "idle", "after 10 min without activity"),
                                  ("created_at", "expired", "limit of 2 h")):
            with httpx.Client(follow_redirects=False) as auditor:
                assert login(auditor, url, "auditor").status_code == 303
                assert auditor.get(f"{url}/decisions").status_code == 200
                with store.writer.begin() as conn:
                    conn.execute(sa.text(f"UPDATE console_sessions SET {column} = {column} - 7201 "
                                         "WHERE ended_at IS NULL"))
                ended = auditor.get(f"{url}/decisions")
                assert ended.status_code == 303 and ended.headers["location"].endswith(f"why={why}")
                assert said in auditor.get(url + ended.headers["location"]).text
        driver.get(f"{url}/login?why=idle")
        shot(driver, "21-session-idle")

        # a rotated auditor token: its sessions end at the next request after the restart; the editor's do not
        auditor, editor = httpx.Client(follow_redirects=False), httpx.Client(follow_redirects=False)
        assert login(auditor, url, "auditor").status_code == 303 and login(editor, url, "editor").status_code == 303
        assert server.stop() == 0
        rotated = write_tokens(tmp_path / "tokens.yaml").read_text().replace(TOKENS["auditor"], "tok-auditor-2026")
        (tmp_path / "rotated.yaml").write_text(rotated)
        server = start(tmp_path, "--console", f"127.0.0.1:{port}", "--config", str(_config(tmp_path)),
                       "--tokens", str(tmp_path / "rotated.yaml"), auth=False, db=server.db)
        console_up(url)
        assert editor.get(f"{url}/rulesets").status_code == 200
        refused = auditor.get(f"{url}/decisions")
        assert refused.status_code == 303 and refused.headers["location"].endswith("why=token")
        assert "removed or rotated" in auditor.get(url + refused.headers["location"]).text
        rows = store.writer.connect().execute(sa.text("SELECT name, ended_why FROM console_sessions")).all()
        assert ("auditor", "token") in rows and ("editor", None) in rows
        auditor.close()
        editor.close()
    finally:
        store.close()
        assert server.stop() == 0
