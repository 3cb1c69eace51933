"""The layers hold: the media layer and the review UI never import torch (not even inside a
function), and the daemon process, which only supervises children, never loads it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from autoclip import synth

PACKAGE = Path(__file__).resolve().parents[1] / "autoclip"
HEAVY = ("torch", "torchvision")


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module ``path`` imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
    return found


def _reaches(start: str, modules: dict[str, Path]) -> dict[str, list[str]]:
    """Third-party top-level packages reachable from ``start``, each with the chain that gets there."""
    chains: dict[str, list[str]] = {start: [start]}
    todo, outside = [start], {}
    while todo:
        mod = todo.pop()
        for name in _imports(modules[mod], modules):
            if name in modules:
                if name not in chains:
                    chains[name] = [*chains[mod], name]
                    todo.append(name)
            elif not name.startswith("autoclip"):
                outside.setdefault(name.split(".")[0], [*chains[mod], name])
    return outside


def test_media_and_review_never_import_torch() -> None:
    modules = _modules()
    starts = [m for m in modules if m.startswith(("autoclip.media", "autoclip.review"))]
    assert len(starts) >= 5  # media/{probe,decode}, review/{app,queue,preview}
    for start in starts:
        reached = _reaches(start, modules)
        for heavy in HEAVY:
            assert heavy not in reached, f"{start} imports {heavy}: {' -> '.join(reached[heavy])}"


def test_importing_them_loads_no_torch_nor_librosa() -> None:
    # `autoclip --help` and the review UI stay fast: the heavy libraries load in the commands that use them
    code = ("import sys, autoclip.media, autoclip.review.app, autoclip.review.queue, autoclip.review.preview, "
            "autoclip.cli; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'torchvision', 'librosa', 'scipy', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


DAEMON_RUN = """
import json, os, signal, sqlite3, sys, threading, time
from pathlib import Path
from autoclip import config
from autoclip.daemon import Daemon

cfg_path, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = config.load(cfg_path)

def watch():
    states, end = [], time.monotonic() + 240
    while time.monotonic() < end:
        try:
            conn = sqlite3.connect(cfg.path("database"))
            states = [s for (s,) in conn.execute("SELECT state FROM jobs")]
            conn.close()
        except sqlite3.Error:
            states = []
        if states and all(s in ("done", "failed") for s in states):
            break
        time.sleep(0.3)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
    out.write_text(json.dumps({"states": states, "heavy": heavy}))
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=watch, daemon=True).start()
sys.exit(Daemon(cfg, cfg_path).run())
"""


def test_the_daemon_process_never_loads_torch(tmp_path: Path, install_untrained_model) -> None:
    """A real daemon takes a VOD, runs its check and process children to a reel, with the
    retraining scheduler on: torch is loaded in the children only."""
    root = tmp_path / "deploy"
    subprocess.run([sys.executable, "-m", "autoclip", "init", str(root)], check=True, capture_output=True)
    cfg = root / "config.toml"
    cfg.write_text("[frames]\nsize = 32\nfps = 2\n[model]\nthreads = 1\nkind = \"audio\"\n"
                   "[render]\nheight = 180\npreset = \"ultrafast\"\n"
                   "[selection]\nthreshold = 0.01\nlow_threshold = 0.01\n"
                   "[daemon]\nstable = 1.0\nrescan = 2.0\ntimeout_base = 120.0\n"
                   "[retrain]\nenabled = true\ncron = \"0 4 1 1 *\"\n")
    install_untrained_model(cfg)
    synth.make_vod(root / "data" / "inbox" / "a.mp4", 4, [synth.Event(1.0, 3.0, "highlight")])
    result = tmp_path / "modules.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", DAEMON_RUN, str(cfg), str(result)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(result.read_text())
    assert seen["states"] == ["done"], proc.stderr[-3000:]
    assert seen["heavy"] == [], seen["heavy"][:5]
