"""Markdown tables and summaries of result rows."""

from __future__ import annotations

import html
from collections.abc import Sequence

from fawkes_eval.results import ResultRow
from reports.cells import axis_value, finite, sort_rows, varying_axes
from reports.leaderboard import leaderboard
from reports.provenance import environments, models


def _fmt(value: object, spec: str = ".2f") -> str:
    return format(value, spec) if finite(value) else "n/a"


def md_text(text: object) -> str:
    """Names come from user folders: no raw HTML and no stray column separators in a table."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def results_table(rows: Sequence[ResultRow]) -> str:
    """One line per cell: PSR with its 95% CI, top-5 PSR, others' accuracy, perceptual cost and speed.

    Columns: cloak, victim, tracker, then every other cell axis that varies across the rows.
    """
    rows = sort_rows(rows)
    axes = varying_axes(rows)
    header = "| " + " | ".join(axes) + " | PSR [95% CI] | top-5 PSR | others' acc | DSSIM | PSNR dB | s/img |"
    lines = [header, "|" + "---|" * (len(axes) + 6)]
    for r in rows:
        m = r.metrics
        names = " | ".join(md_text(axis_value(r, a)) for a in axes)
        lines.append(
            f"| {names} | {_fmt(m.get('psr'))} [{_fmt(m.get('psr_ci_low'))}, {_fmt(m.get('psr_ci_high'))}] "
            f"| {_fmt(m.get('top5'))} | {_fmt(m.get('others_acc'))} | {_fmt(m.get('dssim'), '.4f')} "
            f"| {_fmt(m.get('psnr'))} | {_fmt(m.get('sec_per_image'))} |"
        )
    return "\n".join(lines) + "\n"


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
