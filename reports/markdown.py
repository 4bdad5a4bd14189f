"""Markdown tables and summaries of result rows: the verdict (one sentence per cloak) first, then one section per
scenario, then what the numbers were measured on (the environment once)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from fawkes_eval.results import ReportBundle, ResultRow
from reports.cells import finite
from reports.leaderboard import leaderboard
from reports.provenance import environment_summary, models
from reports.table import results_tables
from reports.verdict import BASIS, verdicts


def _fmt(value: object, spec: str = ".2f") -> str:
    return format(value, spec) if finite(value) else "n/a"


def md_text(text: object) -> str:
    """Names come from user folders: no raw HTML and no stray column separators in a table."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def verdict_lines(rows: Sequence[ResultRow]) -> str:
    """The verdict: one plain sentence per cloak (escaped), and what "above the clean baseline" means."""
    found = verdicts(rows)
    if not found:
        return "Only the clean baseline (the `none` cloak) was measured: there is no cloak to judge.\n"
    return "".join(f"- {md_text(v.sentence())}\n" for v in found) + f"\n{BASIS}\n"


def results_table(rows: Sequence[ResultRow], headings: str = "Scenario: ") -> str:
    """One table per scenario, one line per cell: the scenario's columns (headline with its 95% CI first) and,
    where the campaign held the clean baseline, the headline above it; cells whose protection is
    indistinguishable from the clean error are marked. Columns: the cell axes that vary, then the metrics."""
    out = []
    tables = results_tables(rows)
    for table in tables:
        if len(tables) > 1 or headings.startswith("#"):
            out.append(f"{headings}{md_text(table.scenario)}\n")
        out.append("| " + " | ".join(md_text(h) for h in [*table.headers, "verdict"]) + " |")
        out.append("|" + "---|" * (len(table.headers) + 1))
        for line, mark in zip(table.lines, table.marks, strict=True):
            out.append("| " + " | ".join(md_text(v) for v in [*line, mark]) + " |")
        out.append("")
    return "\n".join(out)


def provenance_lines(rows: Sequence[ResultRow], *, with_models: bool = True, with_environment: bool = True) -> str:
    """What the numbers were measured on, once per distinct dataset / model combination, and the environment once
    (``with_models`` / ``with_environment`` False where a page has sections of its own for them)."""
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
    for m in models(rows) if with_models else []:
        seen.append(f"- victim {md_text(m['model'])} ({md_text(m['family'] or '?')}, license "
                    f"{md_text(m['license'] or '?')}): {md_text(m['weights'] or 'no weight hashes recorded')}")
    env = environment_summary(rows)
    if with_environment and env:
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
    env_lines = "\n".join(f"- {md_text(k)}: {md_text(v)}" for k, v in environment_summary(rows).items())
    return (
        f"# {md_text(title)}\n\n## Verdict\n\n{verdict_lines(rows)}\n## Cloaks ranked by {board['ranked_by']}\n\n"
        f"{ranking}\n\n{results_table(rows, '## Scenario: ')}\n## Measured on\n\n"
        f"{provenance_lines(rows, with_models=False, with_environment=False)}\n## Models\n\n{model_lines}\n\n"
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
    return (f"# {md_text(bundle.title)}\n\n## Verdict\n\n{verdict_lines(bundle.rows)}\n"
            f"{results_table(bundle.rows, '## Scenario: ')}\n## Measured on\n\n{provenance_lines(bundle.rows)}"
            f"{left_out_table(bundle.left_out)}")
