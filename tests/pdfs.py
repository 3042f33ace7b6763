"""Real PDFs for tests, written with fpdf2 (a text layer per page, as a claims portal would produce)."""

from __future__ import annotations

from fpdf import FPDF


def make_pdf(pages: list[str], title: str = "Claim form") -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(title)
    pdf.set_auto_page_break(auto=False)
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())
