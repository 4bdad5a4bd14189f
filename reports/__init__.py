"""Reports: result rows in, HTML / Markdown / JSON out. A report is a pure function of result rows."""

from fawkes_eval.registry import REPORTS

REPORTS.register_lazy("markdown", "reports.markdown:results_table", summary="Markdown results table")
REPORTS.register_lazy("provenance", "reports.markdown:provenance_lines", summary="Markdown lines: measured on what")
REPORTS.register_lazy("html", "reports.html:render_html", summary="Self-contained HTML page with an image grid")
