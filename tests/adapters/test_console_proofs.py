"""The console's decision page and signed checkpoints: "included in checkpoint N, signed at T" and the proof
for download (verified offline), "not yet in a signed checkpoint" after it, no line for a log never signed;
a reader who sees the record masked gets no proof (it holds the hashed texts whole)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from adapters.infra.checkpoints import (
    Verifier,
    check_proof,
    generate_keys,
    keep_in,
    load_private_key,
    read_public_keys,
    sign,
)
from adapters.infra.rulesets import load_file
from engine.clock import FixedClock, SequentialIds
from engine.loop import Engine
from engine.recorded import RecordedAnswers
from tests.adapters.test_pii import IBAN, ROOT, client, decided


def test_the_decision_page_shows_its_checkpoint_and_offers_the_proof(tmp_path: Path) -> None:
    store, registry, record = decided(tmp_path)
    first = f"/decisions/{record['decision_id']}"
    dpo = client(store, registry, "t-dpo", ("dpo",))
    assert "Signed checkpoint" not in dpo.get(first).text  # nothing signed yet: no line

    private, public = generate_keys(tmp_path / "keys")
    size, root = store.tree_head()
    cp = sign(load_private_key(private.read_text(), "key"), "test/console", size, root)
    keep_in(store, cp)
    rs = load_file(ROOT / "rulesets/payment-approval.yaml")
    answers = RecordedAnswers({"lookup_limit": {"user": "bob", "single_limit": 5000},
                               "anomaly_model": {"score": 0.1, "reasons": []}})
    later = asyncio.run(Engine(rs).decide({"payment": {"payment_ref": "PAY-78", "amount": 30, "currency": "EUR",
                                                       "beneficiary_iban": IBAN, "initiated_by": "bob",
                                                       "new_beneficiary": False}}, answers, answers,
                                          FixedClock(1_764_000_100.0), SequentialIds("q-"))).to_dict()
    store.save(later)

    page = dpo.get(first).text
    assert f"included in checkpoint 1 (the log's first 1 decisions), signed at {cp.time}" in page
    assert f'href="{first}/proof.json"' in page
    assert "not yet in a signed checkpoint" in dpo.get(f"/decisions/{later['decision_id']}").text
    download = dpo.get(f"{first}/proof.json")
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    result = check_proof(json.loads(download.text), Verifier(read_public_keys([public]), "test/console"))
    assert result.problems == [] and IBAN in download.text
    assert dpo.get(f"/decisions/{later['decision_id']}/proof.json").status_code == 404

    auditor = client(store, registry, "t-auditor", ("dpo",))  # sees the IBAN masked: no proof for them
    assert "included in checkpoint 1" in auditor.get(first).text and "proof.json" not in auditor.get(first).text
    refused = auditor.get(f"{first}/proof.json")
    assert refused.status_code == 403 and IBAN not in refused.text
