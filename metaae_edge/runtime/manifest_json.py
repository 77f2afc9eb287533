"""Parsing ``manifest.json`` text: the one JSON reader of the bundle format, refusing what a
metaae-edge manifest never holds (huge files, deep nesting, duplicate keys, NaN, numbers
beyond a float, lone surrogates) in one line, never a traceback. Torch-free, stdlib only;
:mod:`metaae_edge.runtime.manifest` re-exports its names."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..errors import BundleError

MANIFEST_NAME = "manifest.json"
#: The largest manifest.json read (a real one is a few KiB; wide inputs' normalisation
#: vectors a few MiB): a bigger file is refused before it is read.
MAX_MANIFEST_BYTES = 32 << 20
#: The deepest nesting of objects / arrays accepted (a real manifest nests 5 deep): deeper
#: JSON is refused in one line, never a RecursionError in a later walk over it.
MAX_MANIFEST_DEPTH = 64


def _fail(root: Path, what: str) -> BundleError:
    return BundleError(f"bundle {root}: {what}")


class _Refused(ValueError):
    """A JSON construct the manifest parser refuses (raised from the json hooks)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Refused(f"key {dup!r:.60} appears twice in one object")
    return out


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:40]} does not fit a float")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:  # sizes and counts fit 63 bits; beyond is not ours
        raise _Refused(f"integer {text[:20]}... has more than 19 digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _depth_error(data: Any, limit: int = MAX_MANIFEST_DEPTH) -> str | None:
    """Why ``data`` nests objects / arrays deeper than ``limit``, or None (iterative)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        children = (node.values() if isinstance(node, dict) else
                    node if isinstance(node, list) else ())
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return f"it nests objects / arrays deeper than {limit} levels"
                stack.append((child, depth + 1))
    return None


def _surrogate_error(text: str, data: Any) -> str | None:
    """Why ``data`` holds a lone UTF-16 surrogate (``"\\ud800"``: no character, so it
    cannot be printed or written as UTF-8), or None."""
    if not re.search(r"\\u[dD][89a-fA-F]", text):
        return None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "it holds an unpaired UTF-16 surrogate escape"
    return None


def parse_manifest_json(text: str | bytes, *, root: Path = Path(".")) -> Any:
    """``manifest.json`` text -> JSON value, refusing what a metaae-edge manifest never holds.

    Refused in one line (``BundleError``, never a traceback): text over
    :data:`MAX_MANIFEST_BYTES`, invalid JSON or UTF-8, a key twice in one object (parsers
    disagree on which one wins), ``NaN`` / ``Infinity``, numbers beyond a float or of more
    digits than Python converts, nesting deeper than :data:`MAX_MANIFEST_DEPTH`.

    Raises:
        BundleError: naming the problem.
    """
    if len(text) > MAX_MANIFEST_BYTES:
        raise _fail(root, f"{MANIFEST_NAME} is {len(text)} bytes, more than the "
                          f"{MAX_MANIFEST_BYTES} a manifest may hold")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_finite_float,
                          parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        why = f"it nests objects / arrays deeper than {MAX_MANIFEST_DEPTH} levels"
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, _Refused, int digits
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        why = _depth_error(data) or _surrogate_error(text, data)
        if why is None:
            return data
    raise _fail(root, f"{MANIFEST_NAME} is not valid JSON ({why})")
