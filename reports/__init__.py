"""Reports: result rows in, HTML / Markdown / JSON out. A report is a pure function of result rows."""

from fawkes_eval.registry import REPORTS

REPORTS.register_lazy("markdown", "reports.markdown:results_table", summary="Markdown results table")
REPORTS.register_lazy("provenance", "reports.markdown:provenance_lines", summary="Markdown lines: measured on what")
REPORTS.register_lazy("html", "reports.html:render_html", summary="Self-contained HTML page: plots, table, image grid")
REPORTS.register_lazy("summary", "reports.markdown:markdown_summary", summary="Markdown page: ranking, table, provenance")
REPORTS.register_lazy("leaderboard", "reports.leaderboard:leaderboard_json", summary="JSON leaderboard of cloaks")
REPORTS.register_lazy("compare", "reports.compare:compare_rows", summary="Regression verdicts: candidate vs baseline")
