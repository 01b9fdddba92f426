"""Pictures of a class's counterfactual test, drawn with PIL only (no plotting library is a dependency).

- :func:`effects_chart`: one horizontal bar per (attribute, flip/drop) effect with its interval, the zero
  line and the ``min_effect`` threshold; verified attributes are marked.
- :func:`pairs_grid`: counterfactual image pairs: per tested attribute and content, image ``i`` with the
  attribute next to image ``i`` (the SAME noise) with each alternative.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dexter.verify.counterfactual import Prober
from dexter.verify.verdict import ClassVerification

_FONT = ImageFont.load_default()
_COLOURS = {"flip": (220, 120, 30), "drop": (40, 110, 200)}


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill=(0, 0, 0), anchor: str = "la") -> None:
    draw.text(xy, text, fill=fill, font=_FONT, anchor=anchor)


def effects_chart(v: ClassVerification, width: int = 600) -> Image.Image:
    """Effect sizes (rate with the attribute minus rate with its alternatives) and their intervals."""
    label_w, pad, bar_h = 200, 12, 16
    rows = [(d.attribute, e) for d in v.designs for e in sorted(v.effects_of(d.attribute).values(), key=lambda e: e.kind)]
    height = 68 + max(len(rows), 1) * (bar_h + 6) + 30
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    verdict = "biased towards " + ", ".join(v.verified) if v.verified else "no evidence of a shortcut"
    _text(draw, (pad, 6), f'class "{v.class_name}": {verdict}')
    _text(draw, (pad, 20), f"effect = P(class | attribute) - P(class | closest alternative), {v.confidence:.0%} interval; a "
                           f"test passes at Holm p < {v.alpha:g} and effect >= {v.min_effect:g} (dashed)", fill=(90, 90, 90))
    _text(draw, (pad, 32), "verified: the flip or the drop test passes against every alternative", fill=(90, 90, 90))
    x0, x1 = label_w, width - pad
    top = 50

    def x(value: float) -> float:
        return x0 + (value + 1) / 2 * (x1 - x0)

    if not rows:
        _text(draw, (pad, top + 8), "no attribute was tested (no DEXTER keyword is an attribute)")
        return im
    bottom = top + len(rows) * (bar_h + 6)
    for value in (-1, -0.5, 0, 0.5, 1):
        draw.line([(x(value), top), (x(value), bottom)], fill=(0, 0, 0) if value == 0 else (225, 225, 225))
        _text(draw, (x(value), bottom + 4), f"{value:g}", fill=(90, 90, 90), anchor="ma")
    xm = x(v.min_effect)  # the size threshold, dashed
    for y in range(top, bottom, 6):
        draw.line([(xm, y), (xm, y + 3)], fill=(200, 0, 0))
    verified = set(v.verified)
    for i, (attribute, e) in enumerate(rows):
        y = top + i * (bar_h + 6)
        mark = " (verified)" if attribute in verified else ""
        sat = ", saturated" if e.saturated and not e.passed else ""
        _text(draw, (pad, y + 3), f"{attribute[:14]} {e.kind}{sat}{mark}", fill=(0, 0, 0) if mark else (60, 60, 60))
        left, right = sorted((x(0), x(e.effect)))
        colour = _COLOURS[e.kind] if e.significant else tuple(int(c * 0.4 + 150) for c in _COLOURS[e.kind])
        draw.rectangle([left, y + 2, max(right, left + 1), y + bar_h - 2], fill=colour)
        cy = y + bar_h / 2
        draw.line([(x(e.ci_low), cy), (x(e.ci_high), cy)], fill=(0, 0, 0), width=1)
        for end in (e.ci_low, e.ci_high):
            draw.line([(x(end), cy - 4), (x(end), cy + 4)], fill=(0, 0, 0))
    return im


def pairs_grid(v: ClassVerification, prober: Prober, *, images_per_row: int = 2, rows_per_kind: int = 1,
               cell: int = 64) -> Image.Image | None:
    """Counterfactual pairs of every tested attribute: same noise, attribute vs each alternative.

    The image with the attribute is framed in red; a green dot marks an image the classifier calls the class.
    """
    blocks: list[tuple[str, list[list[np.ndarray]], list[str], list[np.ndarray]]] = []
    for d in v.designs:
        for kind, rows in (("flip", d.flip), ("drop", d.drop)):
            for row in rows[:rows_per_kind]:
                prompts = [row.with_prompt, *row.without_prompts]
                columns = [prober.images(p, range(images_per_row)) for p in prompts]
                labels = prober.outcomes(prompts, images_per_row)
                blocks.append((f"{kind}: {row.content}", columns, [d.attribute, *d.alternatives],
                               [labels[p].labels == v.class_index for p in prompts]))
    if not blocks:
        return None
    label_h = 14
    column_w = images_per_row * (cell + 2) + 6
    width = max(max(len(b[1]) for b in blocks) * column_w + 8, 300)
    height = sum(2 * label_h + cell + 8 for _ in blocks) + 4
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    y = 4
    _text(draw, (width - 4, 4), f"green dot: called {v.class_name}", fill=(0, 140, 0), anchor="ra")
    for title, columns, names, called in blocks:
        _text(draw, (4, y), title)
        y += label_h
        x = 4
        for c, (images, name, hit) in enumerate(zip(columns, names, called)):
            _text(draw, (x, y), name[:12], fill=(200, 0, 0) if c == 0 else (60, 60, 60))
            for j, arr in enumerate(images[:images_per_row]):
                tile = Image.fromarray(arr).convert("RGB").resize((cell, cell), Image.NEAREST)
                im.paste(tile, (x + j * (cell + 2), y + label_h))
                if hit[j]:
                    cx, cy = x + j * (cell + 2) + cell - 7, y + label_h + 6
                    draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=(0, 190, 0), outline=(255, 255, 255))
                if c == 0:
                    draw.rectangle([x + j * (cell + 2) - 1, y + label_h - 1, x + j * (cell + 2) + cell,
                                    y + label_h + cell], outline=(200, 0, 0))
            x += column_w
        y += label_h + cell + 8
    return im


def image_grid(images: Sequence[np.ndarray], columns: int = 8, cell: int = 64) -> Image.Image | None:
    """Plain grid of (H, W, 3) uint8 images."""
    if not len(images):
        return None
    rows = (len(images) + columns - 1) // columns
    im = Image.new("RGB", (min(columns, len(images)) * cell, rows * cell), "white")
    for i, arr in enumerate(images):
        tile = Image.fromarray(arr).convert("RGB").resize((cell, cell), Image.NEAREST)
        im.paste(tile, ((i % columns) * cell, (i // columns) * cell))
    return im


__all__ = ["effects_chart", "image_grid", "pairs_grid"]
