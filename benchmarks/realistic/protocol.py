"""The realistic benchmark's protocol: drive the autoclip CLI as a user would, measure on held-out VODs.

    python -m benchmarks.realistic.protocol [--rounds 3] [--answers 20] [--arm both|queue|random]
        [--set KEY=VALUE ...] [--out DIR] [--cache DIR] [--smoke]

Round 0: ``autoclip init`` a fresh deployment, write its config (a crop profile per VOD from the
face-cam box a user would pick with ``autoclip crop``, plus any ``--set``), ``label import`` the
seed VODs' labels, ``train``, evaluate. Then per round and arm: ``process`` the round's pool VODs,
answer up to ``--answers`` items, ``train``, evaluate.

* queue arm: the items of ``review list --json`` in the product's order, answered by the oracle
  (``highlight`` iff at least half of the item overlaps a true highlight) with ``review mark``;
* random arm (from a copy of the round-0 deployment): the same number of moments of the queue's
  item length placed uniformly at random in the round's pool VODs, answered by the same oracle,
  added with ``label import``.

Evaluation, on the held-out VODs only, with a separate database and job folder so they never enter
the review queue or the labels: frame AP of ``score --json`` (pooled and per VOD) and reel
precision/recall/F1 of ``process --json``; beside them the loudness baseline tuned on the seed VODs.

Everything goes to ``--out`` (default ``<cache>/v<VERSION>/runs/<tag>``): ``state.json`` (every
finished step: a killed run continues where it stopped), ``results.json``, ``table.md`` and the
CLI's logs. The VODs must be built first (``python -m benchmarks.realistic.build``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.realistic import build as B
from benchmarks.realistic import evaluate as E
from benchmarks.realistic import plan as P
from benchmarks.realistic.tomlout import dumps as toml_dumps

log = logging.getLogger("realistic.protocol")
ROUNDS = (("pool1-1080p60", "pool2-720p-vp9"), ("pool3-portrait",), ("pool4-vfr",))


class ProtocolError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------
# state: every finished step, written atomically
# ------------------------------------------------------------------------------------------


class State:
    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"steps": {}, "partial": {}}

    def done(self, step: str) -> Any:
        return self.data["steps"].get(step)

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def finish(self, step: str, result: Any) -> Any:
        self.data["steps"][step] = result
        self.data["partial"].pop(step, None)
        self.save()
        return result


# ------------------------------------------------------------------------------------------
# the CLI, as a user runs it
# ------------------------------------------------------------------------------------------


class Cli:
    def __init__(self, logs: Path):
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)

    def __call__(self, config: Path | None, *args: str, step: str, want_json: bool = False) -> Any:
        cmd = [sys.executable, "-m", "autoclip"]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += list(args)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        name = step.replace("/", "_")
        with open(self.logs / f"{name}.log", "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n[exit {proc.returncode} after {time.monotonic() - t0:.1f} s]\n{proc.stderr}\n")
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ProtocolError(f"`autoclip {' '.join(args)}` failed ({step}): {last}")
        return json.loads(proc.stdout) if want_json else proc.stdout


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------


def parse_set(items: list[str]) -> dict:
    """``KEY.PATH=VALUE`` pairs into a nested dict; VALUE is JSON when it parses, else a string."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ProtocolError(f"--set {item!r}: write KEY=VALUE, e.g. frames.crop=auto")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and v and isinstance(out.get(k), dict) else v
    return out


#: the protocol's one departure from the defaults: at most 200 pseudo-labelled frames per training
#: (default 2000), so that a retrain on this 2-core machine takes minutes, not half an hour;
#: ``--set train.pseudo_max=2000`` restores the default
PROTOCOL_DEFAULTS: dict = {"train": {"pseudo_max": 200}}


def deployment_config(truths: dict[str, dict], overrides: dict, feature_cache: Path) -> dict:
    profiles = {name: {"match": t["file"], "box": t["facecam"]} for name, t in truths.items()}
    base = merge({"paths": {"cache": str(feature_cache)}, "frames": {"profiles": profiles}}, PROTOCOL_DEFAULTS)
    return merge(base, overrides)


def eval_config(cfg: dict) -> dict:
    """The same deployment, but held-out runs use their own database, jobs and reels."""
    return merge(cfg, {"paths": {"database": "eval/autoclip.db", "jobs": "eval/jobs", "reels": "eval/reels",
                                 "inbox": "eval/inbox", "done": "eval/done", "failed": "eval/failed"}})


# ------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        root = B.version_dir(args.cache)
        manifest_path = root / "manifest.json"
        if not manifest_path.exists():
            flag = " --smoke" if args.smoke else ""
            raise ProtocolError(f"no benchmark in {root}: build it first (python -m benchmarks.realistic.build{flag})")
        self.manifest = json.loads(manifest_path.read_text())
        self.truths = {n: E.load_truth(v["truth"]) for n, v in self.manifest["vods"].items()}
        self.paths = {n: v["path"] for n, v in self.manifest["vods"].items()}
        missing = [p for p in self.paths.values() if not Path(p).exists()]
        if missing:
            raise ProtocolError(f"{missing[0]} is missing: run python -m benchmarks.realistic.build again")
        wanted = [P.SMOKE.name] if args.smoke else [s.name for s in P.SUITE]
        if unbuilt := [n for n in wanted if n not in self.paths]:
            flag = " --smoke" if args.smoke else ""
            raise ProtocolError(f"{unbuilt[0]} is not built in {root}: run python -m benchmarks.realistic.build{flag}")
        if args.smoke:
            name = P.SMOKE.name
            self.seed, self.rounds, self.heldout = [name], [(name,)], [name]
        else:
            splits = self.manifest["splits"]
            self.seed, self.heldout = splits["seed"], splits["heldout"]
            self.rounds = list(ROUNDS)
        self.rounds = self.rounds[: args.rounds]
        self.overrides = parse_set(args.set)
        tag = "smoke" if args.smoke else "default"
        if args.set:
            tag += "-" + hashlib.sha256(json.dumps(args.set).encode()).hexdigest()[:8]
        self.out = (args.out or root / "runs" / tag).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.state = State(self.out / "state.json")
        self.cli = Cli(self.out / "logs")
        self.by_path = {str(Path(p).resolve()): n for n, p in self.paths.items()}
        self.rows: list[dict] = []

    # -- deployments --------------------------------------------------------------------------

    def deploy(self, arm: str) -> Path:
        return self.out / f"deploy-{arm}"

    def config(self, arm: str, evaluation: bool = False) -> Path:
        return self.deploy(arm) / ("config-eval.toml" if evaluation else "config.toml")

    def setup(self) -> None:
        if self.state.done("r0/init"):
            return
        d = self.deploy("queue")
        shutil.rmtree(d, ignore_errors=True)
        self.cli(None, "init", str(d), step="r0/init")
        cfg = deployment_config(self.truths, self.overrides, self.out / "feature-cache")
        (d / "config.toml").write_text(toml_dumps(cfg))
        (d / "config-eval.toml").write_text(toml_dumps(eval_config(cfg)))
        for c in ("config.toml", "config-eval.toml"):
            self.cli(d / c, "config", "check", step="r0/init")
        self.state.finish("r0/init", {"config": cfg})

    # -- one round's pieces --------------------------------------------------------------------

    def labels(self, arm: str) -> int:
        return int(self.cli(self.config(arm), "label", "stats", "--json", step=f"{arm}/labels", want_json=True)["labels"])

    def train(self, arm: str, step: str) -> dict:
        if (res := self.state.done(step)) is not None:
            return res
        out = self.cli(self.config(arm), "train", "--json", step=step, want_json=True)
        keep = {k: out.get(k) for k in ("model", "promoted", "skipped", "reason")}
        keep["metrics"] = out.get("metrics")
        return self.state.finish(step, keep)

    def evaluate(self, arm: str, step: str) -> dict:
        if (res := self.state.done(step)) is not None:
            return res
        cfg = self.config(arm, evaluation=True)
        ys, ss, per_vod, total = [], [], {}, E.Counts()
        for name in self.heldout:
            vod = self.paths[name]
            truth = E.highlights(self.truths[name])
            proc = self.cli(cfg, "process", vod, "--json", step=step, want_json=True)
            segs = [(s["start"], s["end"]) for s in proc["segments"]]
            scored = self.cli(cfg, "score", vod, "--json", step=step, want_json=True)
            t, s = np.asarray(scored["times"], dtype=float), np.asarray(scored["scores"], dtype=float)
            y = E.frame_labels(t, truth)
            counts = E.match(segs, truth)
            total = total.add(counts)
            ys.append(y)
            ss.append(s)
            per_vod[name] = {"frame_ap": E.average_precision(y, s), **counts.prf(), "model": proc.get("model"),
                             "segments": [[round(a, 2), round(b, 2)] for a, b in segs]}
        res = {"frame_ap": E.average_precision(np.concatenate(ys), np.concatenate(ss)), **total.prf(),
               "per_vod": per_vod}
        return self.state.finish(step, res)

    def process_pool(self, arm: str, r: int) -> list[dict]:
        items = []
        for name in self.rounds[r - 1]:
            step = f"{arm}/r{r}/process/{name}"
            if (res := self.state.done(step)) is None:
                out = self.cli(self.config(arm), "process", self.paths[name], "--json", step=step, want_json=True)
                res = self.state.finish(step, {"segments": len(out["segments"]), "model": out.get("model")})
            items.append(res)
        return items

    def truth_of(self, vod: str) -> dict:
        name = self.by_path.get(str(Path(vod).resolve())) or next(
            (n for n, p in self.paths.items() if Path(p).name == Path(vod).name), None)
        if name is None:
            raise ProtocolError(f"review item on {vod}, which is not a benchmark VOD")
        return self.truths[name]

    def answer_queue(self, r: int) -> dict:
        step = f"queue/r{r}/answers"
        if (res := self.state.done(step)) is not None:
            return res
        part = self.state.data["partial"].setdefault(step, {"answers": []})
        items = self.cli(self.config("queue"), "review", "list", "--state", "pending", "--json",
                         step=step, want_json=True)
        for item in items:
            if len(part["answers"]) >= self.args.answers:
                break
            truth = self.truth_of(item["vod"])
            label = E.oracle(truth, float(item["start"]), float(item["end"]))
            self.cli(self.config("queue"), "review", "mark", str(item["id"]), "--label", label, step=step)
            part["answers"].append({"id": item["id"], "vod": truth["name"], "start": item["start"], "end": item["end"],
                                    "reason": item.get("reason"), "label": label})
            self.state.save()
        return self.state.finish(step, part)

    def answer_random(self, r: int) -> dict:
        step = f"random/r{r}/answers"
        if (res := self.state.done(step)) is not None:
            return res
        queue = self.state.done(f"queue/r{r}/answers")
        n = len(queue["answers"]) if queue else self.args.answers
        lengths = [a["end"] - a["start"] for a in queue["answers"]] if queue and queue["answers"] else [6.0]
        length = float(np.median(lengths))
        rng = random.Random(1000 + r)
        vods = self.rounds[r - 1]
        taken = [(self.truth_of(lab["vod"])["name"], lab["start"], lab["end"]) for lab in
                 self.cli(self.config("random"), "label", "list", "--json", step=step, want_json=True)
                 if self.by_path.get(str(Path(lab["vod"]).resolve()))]
        answers: list[dict] = []
        tries = 0
        while len(answers) < n and tries < 10000:
            tries += 1
            name = vods[rng.randrange(len(vods))]
            dur = float(self.truths[name]["duration"])
            start = rng.uniform(0.0, dur - length)
            spans = [(a["vod"], a["start"], a["end"]) for a in answers] + taken
            if any(v == name and a < start + length and start < b for v, a, b in spans):
                continue  # a person labels time nobody labelled yet
            label = E.oracle(self.truths[name], start, start + length)
            answers.append({"vod": name, "start": round(start, 2), "end": round(start + length, 2), "label": label})
        csv = self.out / f"random-r{r}.csv"
        rows = ["vod,start,end,label"] + [f"{self.paths[a['vod']]},{a['start']},{a['end']},{a['label']}" for a in answers]
        csv.write_text("\n".join(rows) + "\n")
        self.cli(self.config("random"), "label", "import", str(csv), step=step)
        return self.state.finish(step, {"answers": answers})

    # -- the protocol --------------------------------------------------------------------------

    def round0(self) -> None:
        t0 = time.monotonic()
        self.setup()
        if not self.state.done("r0/seed"):
            self.cli(self.config("queue"), "label", "import", str(self.seed_csv()), step="r0/seed")
            self.state.finish("r0/seed", {"labels": self.labels("queue")})
        tr = self.train("queue", "r0/train")
        ev = self.evaluate("queue", "r0/eval")
        secs = self.state.done("r0/seconds") or self.state.finish("r0/seconds", round(time.monotonic() - t0, 1))
        self.rows.append(self.row("both", 0, self.state.done("r0/seed")["labels"], {}, tr, ev, secs))
        if not self.state.done("r0/copy"):
            dst = self.deploy("random")
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(self.deploy("queue"), dst, symlinks=True)
            self.state.finish("r0/copy", True)

    def seed_csv(self) -> Path:
        rows = ["vod,start,end,label"]
        for name in self.seed:
            for a, b, label in P.seed_clips(P.make_plan(self.spec(name))):
                rows.append(f"{self.paths[name]},{a:.2f},{b:.2f},{label}")
        path = self.out / "seed_labels.csv"
        path.write_text("\n".join(rows) + "\n")
        return path

    @staticmethod
    def spec(name: str) -> P.VodSpec:
        return next(s for s in (*P.SUITE, P.SMOKE) if s.name == name)

    def round(self, arm: str, r: int) -> None:
        t0 = time.monotonic()
        self.process_pool(arm, r)
        answers = self.answer_queue(r) if arm == "queue" else self.answer_random(r)
        tr = self.train(arm, f"{arm}/r{r}/train")
        ev = self.evaluate(arm, f"{arm}/r{r}/eval")
        key = f"{arm}/r{r}/summary"
        if not self.state.done(key):
            self.state.finish(key, {"labels": self.labels(arm), "seconds": round(time.monotonic() - t0, 1)})
        s = self.state.done(key)
        counts = {k: sum(1 for a in answers["answers"] if a["label"] == k) for k in ("highlight", "normal")}
        self.rows.append(self.row(arm, r, s["labels"], counts, tr, ev, s["seconds"]))

    @staticmethod
    def row(arm: str, r: int, labels: int, answers: dict, tr: dict, ev: dict, secs: float) -> dict:
        return {"arm": arm, "round": r, "labels": labels, "answers": answers, "model": tr.get("model"),
                "promoted": tr.get("promoted"), "frame_ap": ev["frame_ap"], "precision": ev["precision"],
                "recall": ev["recall"], "f1": ev["f1"], "seconds": secs,
                "frame_ap_per_vod": {n: v["frame_ap"] for n, v in ev["per_vod"].items()},
                "f1_per_vod": {n: v["f1"] for n, v in ev["per_vod"].items()}}

    def baseline(self) -> dict:
        if (res := self.state.done("baseline")) is not None:
            return res
        t0 = time.monotonic()
        seed = [(E.loudness(self.paths[n]), E.highlights(self.truths[n])) for n in self.seed]
        base, seed_res = E.tune_loudness(seed)
        total, ys, ss, per_vod = E.Counts(), [], [], {}
        for n in self.heldout:
            track, truth = E.loudness(self.paths[n]), E.highlights(self.truths[n])
            c = E.match(base.segments(track), truth)
            total = total.add(c)
            y = E.frame_labels(track[0], truth)
            ys.append(y)
            ss.append(track[1])
            per_vod[n] = {"frame_ap": E.average_precision(y, track[1]), **c.prf()}
        res = {"params": vars(base), "seed": seed_res, "frame_ap": E.average_precision(np.concatenate(ys), np.concatenate(ss)),
               **total.prf(), "per_vod": per_vod, "seconds": round(time.monotonic() - t0, 1)}
        return self.state.finish("baseline", res)

    def run(self) -> dict:
        t0 = time.monotonic()
        base = self.baseline()
        self.round0()
        arms = ["queue", "random"] if self.args.arm == "both" else [self.args.arm]
        for arm in arms:
            for r in range(1, len(self.rounds) + 1):
                self.round(arm, r)
                self.write(base, time.monotonic() - t0)
        return self.write(base, time.monotonic() - t0)

    def write(self, base: dict, secs: float) -> dict:
        result = {"version": P.VERSION, "overrides": self.overrides, "seed": self.seed, "rounds": self.rounds,
                  "heldout": self.heldout, "answers_per_round": self.args.answers, "baseline": base,
                  "rows": self.rows, "seconds": round(secs, 1)}
        tmp = self.out / ".results.json.tmp"
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(self.out / "results.json")
        (self.out / "table.md").write_text(table(result))
        return result


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def table(result: dict) -> str:
    lines = ["| arm | round | labels | answers (hl/normal) | promoted | frame AP | P | R | F1 | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    b = result["baseline"]
    lines.append(f"| loudness baseline (tuned on seed) | - | - | - | - | {_f(b['frame_ap'])} | {_f(b['precision'])} | "
                 f"{_f(b['recall'])} | {_f(b['f1'])} | {b['seconds']:.0f} |")
    seen = set()
    for row in result["rows"]:
        key = (row["arm"], row["round"])
        if key in seen:
            continue
        seen.add(key)
        ans = f"{row['answers'].get('highlight', 0)}/{row['answers'].get('normal', 0)}" if row["answers"] else "-"
        promoted = {True: "yes", False: "no"}.get(row["promoted"], "-")
        lines.append(f"| {row['arm']} | {row['round']} | {row['labels']} | {ans} | {promoted} | {_f(row['frame_ap'])} | "
                     f"{_f(row['precision'])} | {_f(row['recall'])} | {_f(row['f1'])} | {row['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=B.default_cache(), help="benchmark cache (default %(default)s)")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default <cache>/v<N>/runs/<tag>); reusing one resumes")
    ap.add_argument("--rounds", type=int, default=3, help="review rounds after round 0")
    ap.add_argument("--answers", type=int, default=20, help="most answers per round")
    ap.add_argument("--arm", choices=("both", "queue", "random"), default="both", help="which arms to run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. frames.crop=auto (repeatable; VALUE is JSON or a string)")
    ap.add_argument("--smoke", action="store_true", help="the smoke VOD as seed, pool and held-out")
    ap.add_argument("--fresh", action="store_true", help="delete the run folder first")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        run = Run(args)
        if args.fresh:
            shutil.rmtree(run.out)
            run = Run(args)
        result = run.run()
    except ProtocolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(result), end="")
    print(f"results: {run.out / 'results.json'}  ({result['seconds']:.0f} s this run)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
