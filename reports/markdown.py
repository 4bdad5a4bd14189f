"""Markdown tables of result rows."""

from __future__ import annotations

from fawkes_eval.results import ResultRow

COLUMNS = ("cloak", "victim", "tracker")


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value == value else "n/a"


def results_table(rows: list[ResultRow]) -> str:
    """One line per cell: PSR with its 95% CI, top-5 PSR, others' accuracy, perceptual cost and speed."""
    header = "| cloak | victim | tracker | PSR [95% CI] | top-5 PSR | others' acc | DSSIM | PSNR dB | s/img |"
    lines = [header, "|" + "---|" * 9]
    for r in sorted(rows, key=lambda r: tuple(str(r.cell.get(c, "")) for c in COLUMNS)):
        m = r.metrics
        lines.append(
            f"| {r.cell.get('cloak', '')} | {r.cell.get('victim', '')} | {r.cell.get('tracker', '')} "
            f"| {_fmt(m['psr'])} [{_fmt(m['psr_ci_low'])}, {_fmt(m['psr_ci_high'])}] | {_fmt(m.get('top5', float('nan')))} "
            f"| {_fmt(m['others_acc'])} | {m.get('dssim', float('nan')):.4f} | {_fmt(m.get('psnr', float('nan')))} "
            f"| {_fmt(m.get('sec_per_image', float('nan')))} |"
        )
    return "\n".join(lines) + "\n"


def provenance_lines(rows: list[ResultRow]) -> str:
    """What the numbers were measured on, once per distinct dataset / model combination."""
    seen: list[str] = []
    for r in rows:
        p = r.provenance
        line = (
            f"- dataset `{p.get('dataset', '?')}` (manifest sha256 {str(p.get('manifest_sha256', '?'))[:12]}), "
            f"{p.get('n_identities', '?')} identities, {p.get('n_images', '?')} images, "
            f"protected users: {', '.join(p.get('protected_users', []))}; seed {r.cell.get('seed', '?')}"
        )
        if line not in seen:
            seen.append(line)
    return "\n".join(seen) + "\n"
