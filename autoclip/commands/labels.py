"""`autoclip label import|add|list|export|stats|delete`: manage labelled segments."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from autoclip.commands import Context, add_command, add_group, add_json, add_vod, emit_json
from autoclip.timefmt import hms


def register(sub: argparse._SubParsersAction) -> None:
    grp = add_group(sub, "label", "manage labelled segments (highlight / normal) used for training")
    p = add_command(
        grp, "import", cmd_import,
        help="import a CSV with header vod,start,end,label (all rows or none)",
        description=(
            "Import labelled segments from a CSV whose header is vod,start,end,label.\n"
            "Times are seconds or HH:MM:SS(.mmm); label is highlight or normal; relative VOD\n"
            "paths resolve against the CSV's folder. Every bad row is reported with its line\n"
            "number and nothing of the file is imported. Importing the same file again adds nothing."
        ),
        example="autoclip label import labels.csv   # row: vods/run1.mkv,00:12:03.5,00:12:10,highlight",
    )
    p.add_argument("file", type=Path, metavar="FILE.csv", help="CSV file to import")
    add_json(p)

    p = add_command(
        grp, "add", cmd_add,
        help="label one segment of a VOD",
        example="autoclip label add vods/run1.mkv 00:12:03.5 00:12:10 highlight",
    )
    add_vod(p)
    p.add_argument("start", metavar="START", help="seconds or HH:MM:SS(.mmm)")
    p.add_argument("end", metavar="END", help="seconds or HH:MM:SS(.mmm)")
    p.add_argument("label", metavar="LABEL", choices=["highlight", "normal"], help="highlight or normal")
    add_json(p)

    p = add_command(
        grp, "list", cmd_list,
        help="list the labels (--json: a list of label objects)",
        example="autoclip label list --json | jq '.[] | select(.label == \"highlight\")'",
    )
    add_json(p)

    p = add_command(
        grp, "export", cmd_export,
        help="write every label to a CSV that `label import` reads back",
        example="autoclip label export backup.csv",
    )
    p.add_argument("file", type=Path, metavar="FILE.csv", help="CSV file to write (replaced atomically)")

    p = add_command(
        grp, "stats", cmd_stats,
        help="counts per label and per VOD, total seconds, and warnings to read before training",
        example="autoclip label stats --json",
    )
    add_json(p)

    p = add_command(
        grp, "delete", cmd_delete,
        help="delete one label by its id (see `label list`)",
        example="autoclip label delete 42",
    )
    p.add_argument("id", type=int, metavar="ID", help="label id")


def _connect(ctx: Context) -> sqlite3.Connection:
    from autoclip import store

    return store.connect(ctx.config.path("database"))


def cmd_import(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import labels

    conn = _connect(ctx)
    try:
        result = labels.import_csv(conn, args.file)
    except labels.LabelImportError as err:
        for line, why in err.problems:
            print(f"{args.file}:{line}: {why}", file=sys.stderr)
        raise
    if args.json:
        emit_json(result)
    else:
        print(f"imported {result['added']} new label(s) from {result['file']} ({result['existing']} already present)")
    return 0


def cmd_add(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import labels

    conn = _connect(ctx)
    label_id = labels.add_label(conn, args.vod, args.start, args.end, args.label, "cli")
    if args.json:
        emit_json(labels.get_label(conn, label_id))
    else:
        print(f"label #{label_id}")
    return 0


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import labels

    rows = labels.list_labels(_connect(ctx))
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print("no labels")
        return 0
    print(f"{'id':>6}  {'label':9}  {'start':>12}  {'end':>12}  {'source':6}  vod")
    for r in rows:
        print(
            f"{r['id']:>6}  {r['label']:9}  {hms(r['start'], 3, compact=True):>12}  "
            f"{hms(r['end'], 3, compact=True):>12}  {r['source']:6}  {r['vod']}"
        )
    return 0


def cmd_export(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import labels

    n = labels.export_csv(_connect(ctx), args.file)
    print(f"wrote {n} label(s) to {args.file}")
    return 0


def cmd_stats(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import labels
    from autoclip.cropbox import describe_sources

    st = labels.stats(_connect(ctx), ctx.config)
    if args.json:
        emit_json(st)
        return 0
    print(f"{st['labels']} label(s), {st['total_seconds']:.1f} s in all")
    for name, v in st["per_label"].items():
        print(f"  {name:9}  {v['count']:>6}  {v['seconds']:>10.1f} s")
    print(f"face-cam box: {describe_sources(st['crops'])}")
    print(f"{len(st['vods'])} VOD(s):")
    for v in st["vods"]:
        flag = "" if v["exists"] == "ok" else f"  [{v['exists']}]"
        print(f"  {v['highlight']:>5} highlight  {v['normal']:>5} normal  {v['seconds']:>9.1f} s  {v['vod']}{flag}")
    for w in st["warnings"]:
        print(f"warning: {w}")
    return 0


def cmd_delete(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import labels
    from autoclip.errors import LabelError

    if not labels.delete_label(_connect(ctx), args.id):
        raise LabelError(f"no label #{args.id}: see `autoclip label list`")
    print(f"deleted label #{args.id}")
    return 0
