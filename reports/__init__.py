"""Reports: result rows in, HTML / Markdown / JSON out. A report is a pure function of result rows.

Formats (what a campaign's ``outputs.reports`` names) declare the file they write: a new format is a function
``ReportBundle -> str`` registered here with ``file=``. The other entries are the building blocks the CLI uses.
"""

from fawkes_eval.registry import REPORTS

REPORTS.register_lazy("markdown", "reports.markdown:markdown_report", file="report.md",
                      summary="Markdown page: results tables, what they were measured on, files left out")
REPORTS.register_lazy("html", "reports.html:html_report", file="report.html",
                      summary="Self-contained HTML page: plots, tables, image grid, provenance, configuration")
REPORTS.register_lazy("table", "reports.markdown:results_table", summary="Markdown results tables, one per scenario")
REPORTS.register_lazy("provenance", "reports.markdown:provenance_lines", summary="Markdown lines: measured on what")
REPORTS.register_lazy("summary", "reports.markdown:markdown_summary", summary="Markdown page: ranking, table, provenance")
REPORTS.register_lazy("leaderboard", "reports.leaderboard:leaderboard_json", summary="JSON leaderboard of cloaks")
REPORTS.register_lazy("compare", "reports.compare:compare_rows", summary="Regression verdicts: candidate vs baseline")
