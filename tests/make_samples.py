"""Write rulesets/samples/claim-theft.pdf (the walk-through's sample claim) from the text below."""

from __future__ import annotations

from pathlib import Path

from tests.pdfs import make_pdf

THEFT_PAGES = [
    "HOME CONTENTS CLAIM FORM\n\nClaim reference: CLM-2026-0193\nPolicy number: HC-2026-448120\n"
    "Claimant: Dana Whitfield\nAddress: 14 Orchard Row, Bristol BS6 7TA\n\n"
    "Section A - The incident\nDate of incident: 2026-10-03\nType of incident: theft\n"
    "Where: the locked garden shed behind the house.",
    "Section B - What happened\nOvernight someone forced the padlock of the garden shed and took my "
    "bicycle and a set of garden power tools. The shed door hasp was torn off. I reported the theft to "
    "Avon and Somerset Police the next morning (crime reference 5226-1003-77).\n\n"
    "Section C - Amount claimed\nBicycle (Trek FX 2, 2024): 850.00 GBP\nPower tools: 390.00 GBP\n"
    "Total amount claimed: 1,240.00 GBP\n\nI declare the information above is true.",
]


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "rulesets/samples/claim-theft.pdf"
    out.write_bytes(make_pdf(THEFT_PAGES, "Claim CLM-2026-0193"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
