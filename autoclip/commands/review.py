"""`autoclip review` (the terminal UI) and its scriptable subcommands: list, mark, undo."""

from __future__ import annotations

import argparse
from typing import Any

from autoclip.commands import Context, add_command, add_group, add_json, emit_json

FIELDS = ("id", "vod", "start", "end", "score", "reason", "state", "priority", "job", "model",
          "created", "decided", "label_id")


def register(sub: argparse._SubParsersAction) -> None:
    grp = add_group(sub, "review", "the review queue: with no subcommand, open the terminal review UI")
    parser = sub.choices["review"]
    parser.set_defaults(func=cmd_review_ui)
    parser.add_argument("--no-frames", action="store_true", help="do not decode filmstrip frames (slow links)")
    parser.epilog = "example:\n  autoclip review            answer the queue with single keys (? for help)"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter

    p = add_command(
        grp, "list", cmd_list,
        help="list review items (pending first, by priority)",
        example="autoclip review list --state pending --json",
    )
    p.add_argument("--state", choices=("pending", "highlight", "normal", "skipped"), help="only items in this state")
    p.add_argument("--limit", type=int, help="at most this many items")
    add_json(p)

    p = add_command(
        grp, "mark", cmd_mark,
        help="answer one item; highlight/normal also create a label (source review)",
        example="autoclip review mark 12 --label highlight",
    )
    p.add_argument("id", type=int, help="item id (from `review list`)")
    p.add_argument("--label", required=True, choices=("highlight", "normal", "skip"), help="the answer")
    add_json(p)

    p = add_command(
        grp, "undo", cmd_undo,
        help="revert the most recent answers (their labels are removed, the items pending again)",
        example="autoclip review undo --steps 3",
    )
    p.add_argument("--steps", type=int, default=1, help="how many answers to revert (default 1)")
    add_json(p)


def _open(ctx: Context) -> Any:
    from autoclip import store

    return store.connect(ctx.config.path("database"))


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item.get(k) for k in FIELDS}


def _line(item: dict[str, Any]) -> str:
    return (f"{item['id']:>6}  {item['state']:<9} {item['reason']:<11} {item['score']:.2f}  "
            f"{item['start']:9.1f}-{item['end']:<9.1f} {item['vod']}")


def cmd_review_ui(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip.review.app import run

    run(ctx.config, frames=not args.no_frames)
    return 0


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip.review import queue

    conn = _open(ctx)
    try:
        items = [_public(it) for it in queue.list_items(conn, args.state, limit=args.limit)]
    finally:
        conn.close()
    if args.json:
        emit_json(items)
        return 0
    if not items:
        print("no review items")
    for it in items:
        print(_line(it))
    return 0


def cmd_mark(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip.review import queue

    conn = _open(ctx)
    try:
        item = _public(queue.mark(conn, args.id, args.label))
    finally:
        conn.close()
    if args.json:
        emit_json(item)
    else:
        extra = f" (label {item['label_id']})" if item["label_id"] else ""
        print(f"item {item['id']}: {item['state']}{extra}")
    return 0


def cmd_undo(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip.review import queue

    conn = _open(ctx)
    try:
        items = [_public(it) for it in queue.undo(conn, args.steps)]
    finally:
        conn.close()
    if args.json:
        emit_json(items)
    elif not items:
        print("nothing to undo")
    else:
        print("pending again: " + ", ".join(str(it["id"]) for it in items))
    return 0
