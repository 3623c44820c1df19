"""Loss curves as inline SVG, drawn on the server: one series for a build, several overlaid for a comparison, and
the running build's curve (its page replaces the SVG as new steps arrive). No plotting library, no JavaScript."""

from __future__ import annotations

from markupsafe import Markup, escape

COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700")  # series in order: A, B, ...
W, H, PAD = 640, 220, 40  # pixels; PAD leaves room for the axis labels
MARKERS = 60  # a series of at most this many points also gets a dot per point


def loss_svg(series: dict[str, list[tuple[float, float]]], title: str = "training loss") -> Markup:
    """An SVG of loss against optimizer step for each named series (name -> [(step, loss)]); empty series skipped."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return Markup('<p class="muted">no training loss recorded</p>')
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    if x1 == x0:
        x1 = x0 + 1
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def xy(step, loss):
        return (PAD + (step - x0) / (x1 - x0) * (W - 2 * PAD), H - PAD + (y0 - loss) / (y1 - y0) * (H - 2 * PAD))

    parts = [f'<svg class="loss" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="none" stroke="#ccc"/>',
             f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
             f'<text x="{PAD}" y="{H - 12}" font-size="11">step {x0:g}</text>',
             f'<text x="{W - PAD}" y="{H - 12}" font-size="11" text-anchor="end">step {x1:g}</text>',
             f'<text x="4" y="{PAD + 4}" font-size="11">{y1:.3g}</text>',
             f'<text x="4" y="{H - PAD}" font-size="11">{y0:.3g}</text>']
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        if pts:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(*p) for p in pts))
            parts.append(f'<polyline class="series" data-name="{escape(name)}" data-points="{len(pts)}" '
                         f'fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
            if len(pts) <= MARKERS:  # a short run (or the first steps of a live one) shows each step
                parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in (xy(*p) for p in pts)]
        parts.append(f'<text x="{W - PAD - 4}" y="{PAD + 16 + 14 * i}" font-size="12" text-anchor="end" '
                     f'fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
