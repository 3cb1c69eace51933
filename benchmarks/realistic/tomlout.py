"""A nested dict of plain values as TOML text (what the protocol writes into a deployment's config)."""

from __future__ import annotations

from typing import Any


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as a TOML value")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else value(k)


def dumps(data: dict, prefix: str = "") -> str:
    """Scalars and lists of a table first, then its sub-tables as ``[a.b]`` sections; None is left out."""
    lines = [f"{_key(k)} = {value(v)}" for k, v in data.items() if v is not None and not isinstance(v, dict)]
    out = []
    if prefix and (lines or not any(isinstance(v, dict) for v in data.values())):
        out.append(f"[{prefix}]")
    out.extend(lines)
    text = "\n".join(out) + ("\n" if out else "")
    for k, v in data.items():
        if isinstance(v, dict):
            sub = dumps(v, f"{prefix}.{_key(k)}" if prefix else _key(k))
            text += ("\n" if text else "") + sub
    return text
