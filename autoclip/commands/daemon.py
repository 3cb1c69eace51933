"""`autoclip daemon`, `autoclip status` and `autoclip check VOD`."""

from __future__ import annotations

import argparse
import fcntl
import os
import time
from pathlib import Path
from typing import Any

from autoclip.commands import Context, add_command, add_json, add_vod, emit_json
from autoclip.timefmt import when


def register(sub: argparse._SubParsersAction) -> None:
    add_command(
        sub, "daemon", cmd_daemon,
        help="watch the inbox, turn each complete VOD into a reel, retrain on schedule (runs until SIGTERM)",
        summary="watch the inbox, make reels, retrain on schedule",
        example="autoclip --config ~/autoclip/config.toml daemon",
    )
    p = add_command(
        sub, "status", cmd_status,
        help="the queue, the running job and its progress, failures, review backlog, current model, retraining",
        summary="queue, running job, failures, model, retraining",
        example="autoclip --config ~/autoclip/config.toml status --json",
    )
    p.add_argument("--failures", type=int, default=10, metavar="N",
                   help="show at most N failures of the last 7 days (default 10)")
    add_json(p)
    p = add_command(
        sub, "retry", cmd_retry,
        help="move a failed file back into the inbox (once its cause is fixed); the daemon tries it again",
        summary="move a failed file back into the inbox",
        example="autoclip --config ~/autoclip/config.toml retry stream.mkv",
    )
    p.add_argument("name", help="the file's name in the failed folder (as `autoclip status` lists it)")
    p = add_command(
        sub, "check", cmd_check,
        help="would the daemon take this file? probe it and check it is complete (not still being written)",
        summary="would the daemon take this file? (complete?)",
        example="autoclip check ~/autoclip/data/inbox/stream.mkv --json",
    )
    add_vod(p)
    add_json(p)


def _config_file(ctx: Context) -> Path | None:
    from autoclip.config import config_path

    p = config_path(ctx.config_path)
    return p.resolve() if p.exists() else None


def cmd_daemon(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip.daemon import run_daemon

    return run_daemon(ctx.config, _config_file(ctx))


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import media
    from autoclip.errors import MediaError

    cfg = ctx.config
    try:
        info = media.probe(args.vod, cfg.media)
        media.check_complete(args.vod, info, cfg.media)
        result: dict[str, Any] = {"ok": True, "code": None, "error": None, "duration": info.duration, "probe": info.to_dict()}
    except MediaError as err:
        result = {"ok": False, "code": err.code, "error": str(err), "detail": err.detail, "duration": None}
    if args.json:
        emit_json(result)
    elif result["ok"]:
        print(f"ok: {args.vod} is complete ({result['duration']:.1f} s)")
    else:
        print(f"refused ({result['code']}): {result['error']}")
    return 0 if result["ok"] else 1


# -- status ----------------------------------------------------------------------------------
def daemon_running(cfg: Any) -> bool:
    """True if a daemon holds this deployment's lock."""
    from autoclip.daemon import LOCK_NAME

    path = cfg.path("jobs") / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def collect_status(cfg: Any, failures: int = 10) -> dict[str, Any]:
    from autoclip import cropbox, scheduler, store
    from autoclip.jobs import ACTIVE, JobStore

    conn = store.connect(cfg.path("database"))
    try:
        jobs = JobStore(cfg, conn)
        running = jobs.list(ACTIVE, limit=1)
        alive = daemon_running(cfg)
        no_cam = cropbox.not_found(conn, limit=None, cfg=cfg)
        return _cluster(cfg) | {
            "daemon": {
                "running": alive,
                "pid": _int(store.get_meta(conn, "daemon.pid")) if alive else None,
                "started": _float(store.get_meta(conn, "daemon.started")),
                "state": store.get_meta(conn, "daemon.state") if alive else "stopped",
            },
            "queue": jobs.counts(),
            "queued": [_job_brief(j) for j in jobs.list(("queued",), limit=20)],
            "running": _job_brief(running[0]) if running and alive else None,
            "failures": _failures(jobs, failures),
            "ignored": _ignored(conn) if alive else {"count": 0, "files": []},
            "facecam_not_found": no_cam[:FACECAM_LISTED],
            "facecam_not_found_count": len(no_cam),
            "review_backlog": _review_backlog(conn),
            "model": _model(cfg),
            "retrain": scheduler.status(cfg, conn),
        }
    finally:
        conn.close()


def _cluster(cfg: Any) -> dict[str, Any]:
    """``{"cluster": ...}`` (nodes, free CPUs) with the Ray backend; nothing with the local one."""
    if cfg.cluster.backend == "local":
        return {}
    from autoclip.runner import get_runner

    runner = get_runner(cfg)
    try:
        return {"cluster": runner.status()}
    finally:
        runner.close()


def _int(v: str | None) -> int | None:
    return int(v) if v and v.isdigit() else None


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v else None
    except ValueError:
        return None


def _job_brief(job: Any) -> dict[str, Any]:
    return {
        "id": job.id, "file": job.name, "source": job.source, "state": job.state, "phase": job.phase,
        "progress": job.progress, "attempts": job.attempts, "next_try": job.next_try or None,
        "started": job.timings.get("started"), "duration": job.duration, "error": job.error,
        "code": job.reason_code, "moved_to": job.moved_to, "reel": job.reel, "updated": job.updated,
    }


#: VODs with crop = "auto" whose face cam was not found (whole frame) that `status --json` lists, newest first
FACECAM_LISTED = 50
#: how far back `autoclip status` lists failures
FAILURE_DAYS = 7
#: what to do about a failure, by reason code (the reason itself says what went wrong)
HINTS = {
    "empty": "copy the file again completely, then `autoclip retry {name}`",
    "truncated": "the copy is incomplete: copy it again completely, then `autoclip retry {name}`",
    "no_duration": "remux it (ffmpeg -i IN -c copy OUT.mkv) into the inbox",
    "unreadable": "check the file's permissions, then `autoclip retry {name}`",
    "not_media": "not a video: remove it from the failed folder",
    "demuxer": "not a plain video file (playlist or script): remove it",
    "no_video": "audio only: nothing to cut a reel from; remove it",
    "too_large": "re-encode it smaller (or raise [media] max_pixels), then `autoclip retry {name}`",
    "unsupported_codec": "re-encode it (H.264/AAC), then put it in the inbox",
    "corrupt": "the file is damaged: copy it again from its source",
    "symlink": "copy or move the file itself into the inbox, then remove the link",
    "not_file": "not a regular file: remove it",
    "timeout": "raise [daemon] timeout_factor / timeout_base, then `autoclip retry {name}`",
    "crashed": "see the job's log.txt (out of memory?), then `autoclip retry {name}`",
    "interrupted": "`autoclip retry {name}` (see the job's log.txt if it keeps happening)",
}
DEFAULT_HINT = "see the job's log.txt under the jobs folder, fix the cause, then `autoclip retry {name}`"


def _failures(jobs: Any, limit: int) -> list[dict[str, Any]]:
    """Failed files of the last FAILURE_DAYS days, newest first, each with what to do."""
    since = time.time() - FAILURE_DAYS * 86400
    out = []
    for job in jobs.list(("failed",), limit=limit, newest_first=True):
        if job.updated < since:
            break
        name = Path(job.moved_to).name if job.moved_to else job.name
        out.append({**_job_brief(job), "name": name,
                    "hint": HINTS.get(job.reason_code or "", DEFAULT_HINT).format(name=name)})
    return out


def _ignored(conn: Any) -> dict[str, Any]:
    import json

    from autoclip import store
    from autoclip.daemon import IGNORED_META

    try:
        data = json.loads(store.get_meta(conn, IGNORED_META) or "{}")
    except ValueError:
        data = {}
    return {"count": int(data.get("count") or 0), "files": list(data.get("files") or [])}


def _review_backlog(conn: Any) -> int:
    (n,) = conn.execute("SELECT COUNT(*) FROM review_items WHERE state = 'pending'").fetchone()
    return int(n)


def _model(cfg: Any) -> dict[str, Any] | None:
    from autoclip.errors import ModelError
    from autoclip.registry import Registry

    reg = Registry(cfg.path("models"))
    mid = reg.current_id()
    if mid is None:
        return None
    try:
        return reg.summary(mid)
    except ModelError as err:
        return {"id": mid, "error": str(err)}


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    st = collect_status(ctx.config, args.failures)
    if args.json:
        emit_json(st)
        return 0
    d, q = st["daemon"], st["queue"]
    print(f"daemon    {'running (pid ' + str(d['pid']) + '): ' + str(d['state']) if d['running'] else 'not running'}")
    print("jobs      " + ", ".join(f"{k} {v}" for k, v in q.items()))
    if st["running"]:
        r = st["running"]
        print(f"running   {r['file']} ({r['state']}, attempt {r['attempts']}){'  ' + r['progress'] if r['progress'] else ''}")
    for j in st["queued"][:5]:
        wait = f", retry {when(j['next_try'], seconds=True)}" if j["next_try"] and j["next_try"] > time.time() else ""
        print(f"queued    {j['file']}{wait}")
    for j in st["failures"]:
        print(f"failed    {j['name']} ({j['code']}): {j['error']}")
        print(f"          -> {j['hint']}")
    ign = st["ignored"]
    if ign["count"]:
        print(f"ignored   {ign['count']} file(s) in the inbox are not taken:")
        for f in ign["files"][:5]:
            print(f"          {f['file']}: {f['reason']}")
        if ign["count"] > 5:
            print(f"          ... and {ign['count'] - 5} more (`autoclip status --json` lists {len(ign['files'])})")
    _print_facecam(st["facecam_not_found"], st["facecam_not_found_count"])
    print(f"review    {st['review_backlog']} pending")
    m = st["model"]
    if m:
        val = m.get("val_ap")
        print(f"model     {m['id']}" + (f" (val AP {val:.3f})" if isinstance(val, float) else ""))
    else:
        print("model     none yet (import labels, then `autoclip train`)")
    _print_cluster(st.get("cluster"))
    r = st["retrain"]
    last = r["last"]
    print(f"retrain   last {when(last['started'], seconds=True) + ' ' + last['status'] if last else 'never'}; next {r['next_iso'] or 'off'}; "
          f"{r['new_labels']}/{r['min_new_labels']} new labels")
    return 0


def cmd_retry(args: argparse.Namespace, ctx: Context) -> int:
    from autoclip import store
    from autoclip.jobs import JobStore

    cfg = ctx.config
    conn = store.connect(cfg.path("database"))
    try:
        dst = JobStore(cfg, conn).retry_failed(args.name)
    finally:
        conn.close()
    how = "the daemon tries it again" if daemon_running(cfg) else "the daemon tries it again when it starts"
    print(f"moved {args.name} back to {dst}: {how}")
    return 0


def _print_facecam(vods: list[dict[str, Any]], count: int, shown: int = 10) -> None:
    """The VODs where no face cam was found with confidence (crop = "auto"): they use the whole frame."""
    if not count:
        return
    print(f"face cam  not found with confidence in {count} VOD(s): they use the whole frame "
          "(`autoclip crop VOD --at TIME`, then a [frames.profiles.NAME] box):")
    for v in vods[:shown]:
        conf = "?" if v["confidence"] is None else f"{v['confidence']:.2f}"
        print(f"          {v['name']}: confidence {conf}, {v['reason'] or 'no reason given'} ({when(v['detected'])})")
    if count > shown:
        print(f"          ... and {count - shown} more (`autoclip status --json` lists {len(vods)})")


def _print_cluster(c: dict[str, Any] | None) -> None:
    if not c:
        return
    if c.get("error"):
        print(f"cluster   ray at {c['address']}: {c['error']}")
        return
    alive = [n for n in c["nodes"] if n["alive"]]
    print(f"cluster   ray at {c['address']}: {len(alive)} nodes, {c['cpus_free']:g} of {c['cpus_total']:g} CPUs free"
          + (f", {c['gpus_free']:g} of {c['gpus_total']:g} GPUs free" if c["gpus_total"] else ""))
    for n in alive:
        print(f"  node    {n['address']} ({n['id']}): {n['cpus']:g} CPUs" + (f", {n['gpus']:g} GPUs" if n["gpus"] else ""))

