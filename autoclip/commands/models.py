"""`autoclip train` and `autoclip models list|show|promote|rollback`."""

from __future__ import annotations

import argparse
from typing import Any

from autoclip.commands import Context, add_command, add_group, add_json, emit_json
from autoclip.timefmt import when

TRIGGERS = ("manual", "cron", "labels", "missed")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "train", cmd_train,
        help="train a model on the labels, evaluate it, and make it current unless it is worse than the current one",
        summary="train, evaluate, promote unless worse",
        description=(
            "Train a new model on the labelled clips (starting from the current model's weights;\n"
            "with train.pseudo_labels, plus its confident pseudo-labels on processed VODs), evaluate\n"
            "it on every frame of the validation and test clips, save it to the registry with its\n"
            "metrics, plots and the clips it trained on, and make it current unless it is worse than\n"
            "the current model beyond train.promote_margin on the validation clips neither trained\n"
            "on (a tie promotes). `autoclip models rollback` undoes a promotion. An unchanged label\n"
            "set is skipped."
        ),
        example="autoclip train --json | jq .metrics.val.ap",
    )
    add_json(p)
    p.add_argument("--trigger", choices=TRIGGERS, default="manual", help="why this run happens (recorded in the history)")
    p.add_argument("--no-pseudo", action="store_true", help="train on human labels only (no teacher pseudo-labels)")
    p.add_argument("--kind", choices=["fused", "frames", "audio"], help="override model.kind for this run")
    p.add_argument("--force", action="store_true", help="train even when the label set is unchanged")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: model.threads)")

    p = add_command(
        sub, "pretrain", cmd_pretrain,
        help="self-supervised pretraining on this deployment's VODs (used by model.pretrained = 'self')",
        summary="audio-visual pretraining on your own VODs",
        description=(
            "Teach the network's frame and audio branches which face goes with which sound, on\n"
            "moments spread over every labelled or processed VOD (no labels needed), and save the\n"
            "weights to models/selfsup/. With model.pretrained = 'self' a new model (one with no\n"
            "current model to warm-start from) starts from them; training runs this first when\n"
            "they are missing or VODs were added since. Prints the contrastive loss per epoch and\n"
            "the audio-to-frame retrieval on held-out blocks against chance."
        ),
        example="autoclip pretrain --json | jq .retrieval_after",
    )
    add_json(p)
    p.add_argument("--if-stale", action="store_true", help="only when the saved weights are missing or out of date")

    grp = add_group(sub, "models", "the model registry: list, inspect, promote, roll back")
    p = add_command(grp, "list", cmd_list, help="list trained models (the current one is marked *)",
                    example="autoclip models list --json")
    add_json(p)
    p = add_command(grp, "show", cmd_show, help="a model's dimensions, metrics, decision and files",
                    example="autoclip models show m-20250101-040000-1a2b")
    p.add_argument("id", metavar="ID", help="model id (see `autoclip models list`)")
    add_json(p)
    p = add_command(grp, "promote", cmd_promote, help="make a model current (its checksum is verified first)",
                    example="autoclip models promote m-20250101-040000-1a2b")
    p.add_argument("id", metavar="ID", help="model id (see `autoclip models list`)")
    p = add_command(grp, "rollback", cmd_rollback, help="make the previously current model current again",
                    example="autoclip models rollback")


def _registry(ctx: Context):
    from autoclip.registry import Registry

    return Registry(ctx.config.path("models"))


def cmd_train(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import store
    from autoclip.errors import UsageError
    from autoclip.train import train

    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    cfg = ctx.config
    cfg.ensure_dirs()
    conn = store.connect(cfg.path("database"))
    result = train(cfg, conn, trigger=args.trigger, pseudo=not args.no_pseudo, progress=not args.json,
                   kind=args.kind, force=args.force, threads=args.threads)
    if args.json:
        emit_json(result)
        return 0
    if result["skipped"]:
        print(f"skipped: {result['reason']}")
        return 0
    val, test = result["metrics"]["val"], result["metrics"]["test"]
    print(f"model {result['model']}: validation frame AP {_f(val.get('frame_ap'))}, "
          f"test frame AP {_f(test.get('frame_ap'))}")
    print(f"{'promoted' if result['promoted'] else 'not promoted'}: {result['reason']}")
    print(f"plots and metrics: {cfg.path('models') / result['model']}")
    return 0


def cmd_pretrain(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import pretrain, store
    from autoclip.model import set_threads

    cfg = ctx.config
    set_threads(cfg.model.threads)
    cfg.ensure_dirs()
    conn = store.connect(cfg.path("database"))
    meta = pretrain.current(cfg) if args.if_stale else None
    why = pretrain.stale_reason(cfg, conn, meta) if args.if_stale else "asked for"
    if why is not None:
        meta = pretrain.run(cfg, conn, progress=not args.json)
    assert meta is not None
    meta = {**meta, "ran": why is not None, "weights": str(pretrain.folder(cfg) / pretrain.WEIGHTS)}
    if args.json:
        emit_json(meta)
        return 0
    if why is None:
        print("self-supervised weights are up to date")
    loss = meta.get("loss") or []
    print(f"{meta['samples']} moments from {len(meta['vods'])} VOD(s); contrastive loss "
          f"{' -> '.join(f'{x:.3f}' for x in loss[:1] + loss[-1:])} (chance {meta['chance_loss']:.3f})")
    if meta.get("retrieval_after") is not None:
        print(f"held-out audio-to-frame retrieval {100 * meta['retrieval_before']:.0f} % -> "
              f"{100 * meta['retrieval_after']:.0f} % (chance {100 * meta['retrieval_chance']:.0f} %)")
    print(f"weights: {meta['weights']}")
    return 0


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    models = _registry(ctx).list()
    if args.json:
        emit_json(models)
        return 0
    if not models:
        print("no models yet: run `autoclip train`")
        return 0
    print(f"  {'id':<26} {'created':<17} {'kind':<7} {'val fAP':>7} {'test fAP':>8}  {'promoted':<8}  trigger")
    for m in models:
        mark = "*" if m["current"] else " "
        promoted = {True: "yes", False: "no"}.get(m.get("promoted"), "?")
        print(f"{mark} {m['id']:<26} {when(m['created'], '?'):<17} {m['kind'] or '?':<7} "
              f"{_f(m.get('val_frame_ap')):>7} {_f(m.get('test_frame_ap')):>8}  {promoted:<8}  {m['trigger'] or ''}")
    return 0


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip.cropbox import describe_sources
    from autoclip.errors import ModelError

    reg = _registry(ctx)
    meta = reg.meta(args.id)
    try:
        reg.verify(args.id)
        check = "ok"
    except ModelError as err:
        check = str(err)
    info = {"id": args.id, "current": reg.current_id() == args.id, "checksum": check,
            "folder": str(reg.root / args.id), "files": sorted(p.name for p in (reg.root / args.id).iterdir()),
            "meta": meta, "metrics": reg.metrics(args.id)}
    if args.json:
        emit_json(info)
        return 0
    m = info["metrics"]
    print(f"model {args.id}{'  (current)' if info['current'] else ''}")
    print(f"  folder     {info['folder']}")
    print(f"  created    {when(meta.get('created'), '?')}  trigger {meta.get('trigger')}")
    print(f"  dims       {meta.get('dims')}")
    print(f"  label set  {meta.get('label_hash')}   checksum {check}")
    for split in ("val", "test"):
        s = m.get(split) or {}
        print(f"  {split:<5}      frame AP {_f(s.get('frame_ap'))}  log loss {_f(s.get('log_loss'))}  "
              f"frame precision {_f(s.get('frame_precision'))}  reel precision {_f(s.get('reel_precision'))} "
              f"(of {s.get('reel_n', 0)})  ({s.get('clips', 0)} clips, {s.get('frames', 0)} frames)")
        print(f"             clip AP {_f(s.get('ap'))}  precision {_f(s.get('precision'))}  recall {_f(s.get('recall'))}"
              f"  F1 {_f(s.get('f1'))}  confusion {s.get('confusion')}")
    _print_comparison(m.get("comparison") or {}, (m.get("current") or {}).get("id"))
    crops = m.get("crops")
    print(f"  face cam   {describe_sources(crops) + ' (clips per box source)' if crops else 'not recorded (trained before it was)'}")
    print(f"  gate       {_gate_line(meta)}")
    decision = meta.get("decision") or {}
    if decision:
        print(f"  decision   {'promoted' if decision.get('promote') else 'not promoted'}: {decision.get('reason')}")
    print(f"  files      {', '.join(info['files'])}")
    return 0


def _gate_line(meta: dict[str, Any]) -> str:
    """The audio gate of the scoring cascade (autoclip/gate.py), as `models show` prints it."""
    gate = meta.get("gate")
    if not isinstance(gate, dict):
        return "none (cascade scoring scores this model's VODs densely; retrain to get one)"
    normal = gate.get("val_normal_pass")
    if gate.get("val_highlight_ranges") is not None:  # chosen on ranges (models trained since 6 December)
        found = (f"finds {100 * gate['val_range_recall']:.0f}% of {gate['val_highlight_ranges']} validation "
                 f"highlight ranges (target {100 * gate['recall_target']:.0f}%; an answered review item is found "
                 f"with {100 * gate['range_share']:.0f}% of it in stage 2's windows, a range you drew with all of it); "
                 f"{100 * gate['val_recall']:.1f}% of their {gate['val_highlight_frames']} frames")
    else:
        found = (f"keeps {100 * gate['val_recall']:.1f}% of {gate['val_highlight_frames']} validation highlight "
                 f"frames (target {100 * gate['recall_target']:.0f}%)")
    return (f"threshold {gate['threshold']:.4f}: {found} in stage 2's windows"
            + ("" if normal is None else f" and {100 * normal:.0f}% of normal ones"))


def _print_comparison(comparison: dict[str, Any], teacher_id: str | None) -> None:
    """Student and teacher on the validation clips the teacher never trained on."""
    if not comparison:
        return
    student, teacher = comparison.get("student") or {}, comparison.get("teacher") or {}
    print(f"  compared   with {teacher_id} on {student.get('clips')} clips / {student.get('frames')} frames:")
    for key in ("frame_ap", "log_loss", "frame_precision", "reel_precision"):
        print(f"             {key:<16} new {_f(student.get(key))}  current {_f(teacher.get(key))}")


def cmd_promote(args: argparse.Namespace, ctx: Context) -> int:
    _registry(ctx).promote(args.id)
    print(f"current model: {args.id}")
    return 0


def cmd_rollback(args: argparse.Namespace, ctx: Context) -> int:
    reg = _registry(ctx)
    before = reg.current_id()
    now = reg.rollback()
    print(f"current model: {now} (was {before})")
    return 0
