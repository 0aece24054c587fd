"""The HTML report: ``report --html`` and ``evaluate --html`` write one self-contained page.

:func:`write_html_report` (:mod:`sidu_bench.html_report.page`) writes ``report.html`` and its
item pictures; what the page shows is assembled in :mod:`sidu_bench.html_report.payload`, the
pictures in :mod:`sidu_bench.html_report.strips`, and the page itself is ``assets/``.
"""

from sidu_bench.html_report.page import FILES_FOLDER, PAGE_FILE, write_html_report

__all__ = ["FILES_FOLDER", "PAGE_FILE", "write_html_report"]
