"""Labelled segments: a time range of one VOD is a ``highlight`` or ``normal``.

Labels live in the ``labels`` table of the store. A VOD is identified by its content
fingerprint (so a VOD moved from the inbox to ``done/`` keeps its labels), and its path is kept
for decoding. Two rules keep the label set consistent:

* an exact duplicate (same VOD, start, end, label) is a no-op that returns the existing id;
* a segment that overlaps a segment of the *other* class on the same VOD is refused with a
  ``LabelError`` naming the label it contradicts.

CSV import is all-or-nothing per file: every bad row is reported with its line number and
nothing of the file is written unless every row is good.
"""

from __future__ import annotations

import csv
import io
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoclip import fsutil, store
from autoclip.config import Config
from autoclip.errors import LabelError
from autoclip.timefmt import hms, parse_time

log = logging.getLogger(__name__)

LABELS = ("highlight", "normal")
SOURCES = ("import", "review", "cli")
CSV_COLUMNS = ("vod", "start", "end", "label")
#: minority/majority count ratio below which ``stats`` warns about class imbalance
IMBALANCE_RATIO = 0.2
#: shortest segment ``stats`` does not warn about, in seconds
MIN_SECONDS = 0.5
#: bad rows named in an import error's one-line message (all of them are in ``.problems``)
_MAX_SHOWN = 20

class LabelImportError(LabelError):
    """A CSV file with bad rows. ``problems`` holds every ``(line, reason)``."""

    def __init__(self, csv_path: Path, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        shown = "; ".join(f"line {n}: {why}" for n, why in problems[:_MAX_SHOWN])
        more = f"; and {len(problems) - _MAX_SHOWN} more" if len(problems) > _MAX_SHOWN else ""
        super().__init__(
            f"{csv_path.name}: {len(problems)} bad row(s), nothing imported: {shown}{more} "
            "(fix them and import the file again)",
            detail="\n".join(f"{csv_path}:{n}: {why}" for n, why in problems),
        )


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def normalize_label(text: str) -> str:
    label = str(text).strip().lower()
    if label not in LABELS:
        raise ValueError(f"label {text!r} must be 'highlight' or 'normal'")
    return label


def _check_range(start: float, end: float) -> None:
    if end <= start:
        raise ValueError(f"end {end:g} must be after start {start:g}")


def _describe(row: sqlite3.Row | dict[str, Any]) -> str:
    return (
        f"label #{row['id']} {row['label']} {hms(row['start'], 3, compact=True)}-{hms(row['end'], 3, compact=True)} "
        f"(source {row['source']})"
    )


# ---------------------------------------------------------------------------------------------
# Single labels
# ---------------------------------------------------------------------------------------------


def _vod_identity(vod: str | Path, fingerprint: str | None) -> tuple[str, str]:
    path = Path(vod).expanduser().resolve()
    if fingerprint:
        return str(path), fingerprint
    if not path.is_file():
        raise LabelError(f"VOD file {path} is missing: check the path (labels need the file to fingerprint it)")
    try:
        return str(path), fsutil.fingerprint(path)
    except OSError as err:
        raise LabelError(f"cannot read VOD file {path}: {err.strerror or err}") from err


def _find_exact(conn: sqlite3.Connection, fp: str, start: float, end: float, label: str) -> int | None:
    row = conn.execute(
        "SELECT id FROM labels WHERE fingerprint = ? AND start = ? AND end = ? AND label = ?",
        (fp, start, end, label),
    ).fetchone()
    return int(row["id"]) if row else None


def _find_contradiction(
    conn: sqlite3.Connection, fp: str, start: float, end: float, label: str
) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM labels WHERE fingerprint = ? AND label != ? AND start < ? AND end > ? "
        "ORDER BY start, id LIMIT 1",
        (fp, label, end, start),
    ).fetchone()


def add_label(
    conn: sqlite3.Connection,
    vod: str | Path,
    start: float | str,
    end: float | str,
    label: str,
    source: str,
    *,
    review_id: int | None = None,
    fingerprint: str | None = None,
) -> int:
    """Store one labelled segment and return its id (the existing id for an exact duplicate).

    ``fingerprint`` may be given when the caller already knows it (the review queue, whose VOD
    may have moved); otherwise the file must exist. Raises ``LabelError`` on bad values or when
    the segment overlaps a label of the other class on the same VOD.
    """
    if source not in SOURCES:
        raise LabelError(f"label source {source!r} must be one of {', '.join(SOURCES)}")
    try:
        t0, t1 = parse_time(start), parse_time(end)
        _check_range(t0, t1)
        label = normalize_label(label)
    except ValueError as err:
        raise LabelError(f"{err} (times are seconds or HH:MM:SS.mmm, label highlight or normal)") from None
    path, fp = _vod_identity(vod, fingerprint)
    with store.transaction(conn):
        existing = _find_exact(conn, fp, t0, t1, label)
        if existing is not None:
            return existing
        clash = _find_contradiction(conn, fp, t0, t1, label)
        if clash is not None:
            raise LabelError(
                f"{label} {hms(t0, 3, compact=True)}-{hms(t1, 3, compact=True)} of {Path(path).name} overlaps "
                f"{_describe(clash)} of the same VOD: fix the times, or delete the wrong one "
                f"with `autoclip label delete {clash['id']}`"
            )
        cur = conn.execute(
            "INSERT INTO labels (vod, fingerprint, start, end, label, source, created, review_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (path, fp, t0, t1, label, source, store.now(), review_id),
        )
    log.debug("label #%s %s %s %.3f-%.3f", cur.lastrowid, label, path, t0, t1)
    return int(cur.lastrowid or 0)


def delete_label(conn: sqlite3.Connection, label_id: int) -> bool:
    """Delete one label; False when there was no such label."""
    with store.transaction(conn):
        cur = conn.execute("DELETE FROM labels WHERE id = ?", (int(label_id),))
    return cur.rowcount > 0


def get_label(conn: sqlite3.Connection, label_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM labels WHERE id = ?", (int(label_id),)).fetchone()
    return dict(row) if row else None


def list_labels(
    conn: sqlite3.Connection, *, fingerprint: str | None = None, label: str | None = None
) -> list[dict[str, Any]]:
    """Every label as a dict (id, vod, fingerprint, start, end, label, source, created, review_id)."""
    sql, args = "SELECT * FROM labels", []
    where = []
    if fingerprint is not None:
        where.append("fingerprint = ?")
        args.append(fingerprint)
    if label is not None:
        where.append("label = ?")
        args.append(normalize_label(label))
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY vod, start, end, id"
    return [dict(r) for r in conn.execute(sql, args)]


# ---------------------------------------------------------------------------------------------
# CSV import / export
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    line: int
    vod: str
    fingerprint: str
    start: float
    end: float
    label: str


def _read_header(reader: Any, csv_path: Path) -> dict[str, int]:
    header = next(reader, None)
    names = [h.strip().lower() for h in header or []]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise LabelError(
            f"{csv_path.name}: line 1 must be the header vod,start,end,label "
            f"(missing: {', '.join(missing)})"
        )
    return {c: names.index(c) for c in CSV_COLUMNS}


def _parse_row(
    cells: list[str], cols: dict[str, int], base: Path, fps: dict[Path, str]
) -> tuple[str, str, float, float, str]:
    if len(cells) <= max(cols.values()):
        raise ValueError(f"expected {len(cols)} fields vod,start,end,label, got {len(cells)}")
    problems = []
    vod_text = cells[cols["vod"]].strip()
    start = end = 0.0
    label = ""
    try:
        start = parse_time(cells[cols["start"]])
        end = parse_time(cells[cols["end"]])
        _check_range(start, end)
    except ValueError as err:
        problems.append(str(err))
    try:
        label = normalize_label(cells[cols["label"]])
    except ValueError as err:
        problems.append(str(err))
    fp = ""
    path = (base / Path(vod_text).expanduser()).resolve() if vod_text else base
    if not vod_text:
        problems.append("empty vod path")
    elif path in fps:
        fp = fps[path]
    elif not path.is_file():
        problems.append(f"VOD file {path} is missing")
    else:
        try:
            fp = fps[path] = fsutil.fingerprint(path)
        except OSError as err:
            problems.append(f"cannot read VOD file {path}: {err.strerror or err}")
    if problems:
        raise ValueError(", ".join(problems))
    return str(path), fp, start, end, label


def _read_csv(csv_path: Path) -> tuple[list[_Row], list[tuple[int, str]]]:
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise LabelError(f"cannot read {csv_path}: {err} (save it as UTF-8 CSV)") from err
    reader = csv.reader(io.StringIO(text, newline=""))
    cols = _read_header(reader, csv_path)
    rows: list[_Row] = []
    problems: list[tuple[int, str]] = []
    fps: dict[Path, str] = {}
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            problems.append((line, f"not valid CSV: {err}"))
            break
        if not any(c.strip() for c in cells):
            continue
        try:
            rows.append(_Row(line, *_parse_row(cells, cols, csv_path.parent, fps)))
        except ValueError as err:
            problems.append((line, str(err)))
    return rows, problems


def _contradictions(conn: sqlite3.Connection, rows: list[_Row]) -> list[tuple[int, str]]:
    problems = []
    seen: dict[str, list[_Row]] = {}
    for r in rows:
        earlier = next(
            (o for o in seen.get(r.fingerprint, []) if o.label != r.label and o.start < r.end and o.end > r.start),
            None,
        )
        if earlier is not None:
            problems.append((r.line, f"{r.label} overlaps the {earlier.label} row on line {earlier.line} (same VOD)"))
        else:
            clash = _find_contradiction(conn, r.fingerprint, r.start, r.end, r.label)
            if clash is not None:
                problems.append((r.line, f"{r.label} overlaps stored {_describe(clash)} (same VOD)"))
        seen.setdefault(r.fingerprint, []).append(r)
    return problems


def import_csv(conn: sqlite3.Connection, csv_path: str | Path, *, source: str = "import") -> dict[str, Any]:
    """Import a ``vod,start,end,label`` CSV in one transaction.

    Relative VOD paths resolve against the CSV's folder. Returns ``{"file", "rows", "added",
    "existing"}``; raises ``LabelImportError`` listing every bad row (nothing imported).
    """
    path = Path(csv_path).expanduser().resolve()
    if not path.is_file():
        raise LabelError(f"CSV file {path} not found: check the path")
    rows, problems = _read_csv(path)
    added = existing = 0
    with store.transaction(conn):
        problems += _contradictions(conn, rows)
        if problems:
            raise LabelImportError(path, sorted(problems))
        for r in rows:
            if _find_exact(conn, r.fingerprint, r.start, r.end, r.label) is not None:
                existing += 1
                continue
            add_label(conn, r.vod, r.start, r.end, r.label, source, fingerprint=r.fingerprint)
            added += 1
    log.info("%s: %d rows, %d new labels, %d already present", path.name, len(rows), added, existing)
    return {"file": str(path), "rows": len(rows), "added": added, "existing": existing}


def export_csv(conn: sqlite3.Connection, csv_path: str | Path) -> int:
    """Write every label as ``vod,start,end,label`` (absolute paths, seconds); returns the count."""
    rows = list_labels(conn)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r["vod"], f"{r['start']:.3f}", f"{r['end']:.3f}", r["label"]])
    fsutil.atomic_write_text(Path(csv_path).expanduser(), buf.getvalue())
    return len(rows)


# ---------------------------------------------------------------------------------------------
# Statistics and the checks to run before training
# ---------------------------------------------------------------------------------------------


def _per_vod(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    vods: dict[str, dict[str, Any]] = {}
    for r in rows:
        v = vods.setdefault(
            r["fingerprint"],
            {"vod": r["vod"], "fingerprint": r["fingerprint"], "highlight": 0, "normal": 0, "seconds": 0.0, "paths": set()},
        )
        v[r["label"]] += 1
        v["seconds"] = round(v["seconds"] + r["end"] - r["start"], 3)
        v["paths"].add(r["vod"])
    out = []
    for v in vods.values():
        paths = sorted(v.pop("paths"))
        v["exists"] = _vod_present(paths, v["fingerprint"])
        out.append(v)
    return sorted(out, key=lambda v: v["vod"])


def _vod_present(paths: list[str], fp: str) -> str:
    """``"ok"``, ``"missing"`` or ``"changed"`` (a file at the path with other content)."""
    state = "missing"
    for p in paths:
        if Path(p).is_file():
            try:
                if fsutil.fingerprint(p) == fp:
                    return "ok"
            except OSError:
                continue
            state = "changed"
    return state


def _overlap_warnings(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault((r["fingerprint"], r["label"]), []).append(r)
    for group in by_key.values():
        group.sort(key=lambda r: (r["start"], r["end"]))
        reach = group[0]
        for r in group[1:]:
            if r["start"] < reach["end"]:
                kind = "duplicate" if (r["start"], r["end"]) == (reach["start"], reach["end"]) else "overlapping"
                out.append(
                    f"{kind} {r['label']} labels #{reach['id']} and #{r['id']} on {Path(r['vod']).name} "
                    f"({hms(r['start'], 3, compact=True)}): merge them or delete one"
                )
            if r["end"] > reach["end"]:
                reach = r
    return out


def _warnings(rows: list[dict[str, Any]], counts: dict[str, int], vods: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["no labels yet: add some with `autoclip label import FILE.csv` or `autoclip review`"]
    out = []
    lo, hi = sorted(LABELS, key=lambda k: counts[k])
    if counts[lo] == 0:
        out.append(f"no {lo} labels: training needs both classes")
    elif counts[lo] / counts[hi] < IMBALANCE_RATIO:
        out.append(
            f"class imbalance: {counts[lo]} {lo} vs {counts[hi]} {hi} (1:{counts[hi] / counts[lo]:.0f}); "
            f"training balances the classes, but more {lo} labels would help"
        )
    if len(vods) < 3:
        out.append(f"only {len(vods)} VOD(s): splits are made per clip, not per VOD, so validation may be optimistic")
    for v in vods:
        n = v["highlight"] + v["normal"]
        if v["exists"] == "missing":
            out.append(f"VOD file missing: {v['vod']} ({n} labels; only cached features can be used)")
        elif v["exists"] == "changed":
            out.append(f"VOD file changed since labelling: {v['vod']} ({n} labels; its old content is gone)")
    out += _overlap_warnings(rows)
    short = [r for r in rows if r["end"] - r["start"] < MIN_SECONDS]
    if short:
        out.append(f"{len(short)} label(s) shorter than {MIN_SECONDS:g} s (e.g. #{short[0]['id']}): they may yield no frames")
    return out


def stats(conn: sqlite3.Connection, cfg: Config | None = None) -> dict[str, Any]:
    """Counts per label and per VOD, total seconds, and warnings to read before training; with
    ``cfg`` also "crops": how many labels use each face-cam box source (``cropbox.clip_sources``:
    stored detections only, a VOD not detected yet counts as "undetected")."""
    rows = list_labels(conn)
    counts = {k: sum(r["label"] == k for r in rows) for k in LABELS}
    seconds = {k: round(sum(r["end"] - r["start"] for r in rows if r["label"] == k), 3) for k in LABELS}
    vods = _per_vod(rows)
    out = {
        "labels": len(rows),
        "per_label": {k: {"count": counts[k], "seconds": seconds[k]} for k in LABELS},
        "total_seconds": round(sum(seconds.values()), 3),
        "vods": vods,
        "warnings": _warnings(rows, counts, vods),
    }
    if cfg is not None:
        from autoclip import cropbox

        out["crops"] = cropbox.clip_sources(rows, cfg, conn)
    return out
