"""Which classes to explain, and which of them a process takes (class sharding over torchrun ranks).

Torch-free, so the params schema can check a class list without importing torch.

Spec (``dexter.classes`` in params.yaml): ``null`` or ``"all"`` (every class of the classifier), a list
whose items are class indices or inclusive ranges ``"a-b"`` (``[0, 5, "10-19"]``), or one range string
(``"0-999"``). Keywords do not depend on the split: every random draw of a run is seeded by
(seed, class, run, step, image), never by a process or a batch slot (``dexter.optimize``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from dexter.errors import DexterInputError

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
ClassSpec = None | str | int | Sequence[int | str]


def parse_classes(spec: ClassSpec, num_classes: int | None = None) -> list[int] | None:
    """The class indices ``spec`` names, in the order given (ranges expanded), or None for 'all' when
    ``num_classes`` is unknown. Duplicates, negative indices, reversed ranges and (when ``num_classes``
    is given) indices past it are a :class:`DexterInputError`."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return None if num_classes is None else list(range(num_classes))
    items = [spec] if isinstance(spec, str | int) else list(spec)
    if not items:
        raise DexterInputError("classes: an empty list names no class (use 'all' or null for every class)")
    out: list[int] = []
    for item in items:
        if isinstance(item, bool):
            raise DexterInputError(f"classes: {item!r} is not a class index")
        if isinstance(item, int):
            if item < 0:
                raise DexterInputError(f"classes: {item} is negative")
            out.append(item)
            continue
        if isinstance(item, str) and item.strip().isdigit():
            out.append(int(item))
            continue
        m = _RANGE.match(item) if isinstance(item, str) else None
        if m is None:
            raise DexterInputError(f"classes: {item!r} is neither a class index, a range 'a-b' nor 'all'")
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise DexterInputError(f"classes: range {item!r} ends before it starts")
        out.extend(range(lo, hi + 1))
    dup = sorted({c for c in out if out.count(c) > 1})
    if dup:
        raise DexterInputError(f"classes: {dup} named more than once")
    if num_classes is not None:
        bad = [c for c in out if c >= num_classes]
        if bad:
            shown = bad if len(bad) <= 5 else [*bad[:5], "..."]
            raise DexterInputError(f"classes: {shown} out of range, the classifier has {num_classes} classes")
    return out


def shard(classes: Sequence[int], rank: int, world_size: int) -> list[int]:
    """The classes of process ``rank`` of ``world_size``: every ``world_size``-th class of the SORTED list,
    starting at ``rank``. Deterministic (each rank computes it alone, no communication), disjoint, and
    balanced to one class; neighbouring indices (often similar classes, similar run lengths) land on
    different ranks."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} of world size {world_size}")
    return sorted(classes)[rank::world_size]


__all__ = ["parse_classes", "shard"]
