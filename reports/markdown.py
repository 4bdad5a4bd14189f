"""Markdown tables and summaries of result rows."""

from __future__ import annotations

import html
from collections.abc import Sequence

from fawkes_eval.results import ReportBundle, ResultRow
from reports.cells import finite
from reports.leaderboard import leaderboard
from reports.provenance import environments, models
from reports.table import results_tables


def _fmt(value: object, spec: str = ".2f") -> str:
    return format(value, spec) if finite(value) else "n/a"


def md_text(text: object) -> str:
    """Names come from user folders: no raw HTML and no stray column separators in a table."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def results_table(rows: Sequence[ResultRow]) -> str:
    """One table per scenario, one line per cell: the scenario's columns (headline with its 95% CI first) and,
    where the campaign held the clean baseline, the headline above it; cells whose protection is
    indistinguishable from the clean error are marked. Columns: the cell axes that vary, then the metrics."""
    out = []
    tables = results_tables(rows)
    for table in tables:
        if len(tables) > 1:
            out.append(f"Scenario: {md_text(table.scenario)}\n")
        out.append("| " + " | ".join(md_text(h) for h in [*table.headers, "verdict"]) + " |")
        out.append("|" + "---|" * (len(table.headers) + 1))
        for line, mark in zip(table.lines, table.marks, strict=True):
            out.append("| " + " | ".join(md_text(v) for v in [*line, mark]) + " |")
        out.append("")
    return "\n".join(out)


def provenance_lines(rows: Sequence[ResultRow]) -> str:
    """What the numbers were measured on, once per distinct dataset / model combination."""
    seen: list[str] = []
    for r in rows:
        p = r.provenance
        line = (
            f"- dataset `{p.get('dataset', '?')}` (manifest sha256 {str(p.get('manifest_sha256', '?'))[:12]}), "
            f"{p.get('n_identities', '?')} identities, {p.get('n_images', '?')} images, "
            f"protected users: {', '.join(map(md_text, p.get('protected_users', [])))}; seed {r.cell.get('seed', '?')}"
        )
        if line not in seen:
            seen.append(line)
    for m in models(rows):
        seen.append(f"- victim {md_text(m['model'])} ({md_text(m['family'] or '?')}, license "
                    f"{md_text(m['license'] or '?')}): {md_text(m['weights'] or 'no weight hashes recorded')}")
    for env in environments(rows):
        seen.append("- " + ", ".join(f"{k} {md_text(env[k])}" for k in ("fawkes_eval", "torch", "device", "git")
                                     if k in env))
    return "\n".join(seen) + "\n"


def markdown_summary(title: str, rows: Sequence[ResultRow]) -> str:
    """A page to paste into an issue or a paper draft: ranking, table, data, models and environment."""
    board = leaderboard(rows)
    ranking = "\n".join(
        f"{e['rank']}. {md_text(e['cloak'])}: worst-case PSR {_fmt(e['worst_psr'])} "
        f"[{_fmt(e['worst_psr_ci'][0])}, {_fmt(e['worst_psr_ci'][1])}], mean PSR {_fmt(e['mean_psr'])}, "
        f"mean DSSIM {_fmt(e['mean_dssim'], '.4f')}, {e['n_cells']} cell(s)"
        for e in board["entries"]
    )
    model_lines = "\n".join(
        f"- {md_text(m['model'])} ({md_text(m['family'] or '?')}, license {md_text(m['license'] or '?')}): "
        f"{md_text(m['weights'] or 'no weight hashes recorded')}"
        for m in models(rows)
    )
    env_lines = "\n".join(
        "- " + ", ".join(f"{md_text(k)} {md_text(v)}" for k, v in env.items()) for env in environments(rows) if env
    )
    return (
        f"# {md_text(title)}\n\n## Cloaks ranked by {board['ranked_by']}\n\n{ranking}\n\n## Results\n\n"
        f"{results_table(rows)}\n## Measured on\n\n{provenance_lines(rows)}\n## Models\n\n{model_lines}\n\n"
        f"## Environment\n\n{env_lines or '- not recorded'}\n"
    )


def left_out_table(left_out: Sequence[dict[str, str]]) -> str:
    """The files a run could not use, as a Markdown section (empty when there are none)."""
    if not left_out:
        return ""
    lines = "".join(f"| {' | '.join(md_text(e[k]) for k in ('dataset', 'file', 'kind', 'reason'))} |\n" for e in left_out)
    return f"\n## Files left out\n\n| dataset | file | kind | reason |\n|---|---|---|---|\n{lines}"


def markdown_report(bundle: ReportBundle) -> str:
    """``report.md``: the results tables, what they were measured on, and the files left out."""
    return (f"# {md_text(bundle.title)}\n\n{results_table(bundle.rows)}\nMeasured on:\n{provenance_lines(bundle.rows)}"
            f"{left_out_table(bundle.left_out)}")
