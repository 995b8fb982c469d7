"""A server-rendered SVG bar chart: processed and failed per day. No JS, no build step."""
from __future__ import annotations

from django.utils.html import escape


def history_svg(history: list[tuple[str, int, int]], width: int = 900, height: int = 180) -> str:
    top = max([p + f for _, p, f in history] + [1])
    n = max(len(history), 1)
    bar = width / n
    parts = [f'<svg class="djjobs-chart" viewBox="0 0 {width} {height + 20}" role="img" '
             f'aria-label="Processed and failed jobs per day" xmlns="http://www.w3.org/2000/svg">']
    for i, (day, processed, failed) in enumerate(history):
        x = i * bar + 1
        h_p = (processed / top) * height
        h_f = (failed / top) * height
        title = escape(f"{day}: {processed:,} processed, {failed:,} failed")
        parts.append(f'<g><title>{title}</title>'
                     f'<rect class="processed" x="{x:.1f}" y="{height - h_p - h_f:.1f}" width="{bar - 2:.1f}" height="{h_p:.1f}"/>'
                     f'<rect class="failed" x="{x:.1f}" y="{height - h_f:.1f}" width="{bar - 2:.1f}" height="{h_f:.1f}"/></g>')
        if i % max(1, n // 6) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 15}">{escape(day[5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)
