"""What each benchmark VOD holds: its format, layout, streamer and the planted events (the truth).

A *highlight* (3-10 s) has both cues for its whole length: a face-cam reaction (shake, zoom,
flash, in combinations) and the streamer shouting. A *distractor* is as long and as loud as a
highlight but has one cue only: ``loud_sfx`` (game explosions/gunfire, calm face), ``shout``
(the streamer shouts, calm face) or ``face`` (a face-cam reaction, calm voice). About one
distractor per highlight, the three kinds in equal numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

VERSION = 1  # bump when the media or the truth would change; the cache keeps one folder per version
REACTIONS = (("shake",), ("zoom",), ("zoom", "shake"), ("flash", "shake"), ("flash", "zoom"))
DISTRACTOR_KINDS = ("loud_sfx", "shout", "face")


@dataclass(frozen=True)
class VodSpec:
    name: str
    split: str  # seed, pool or heldout
    duration: float
    width: int
    height: int
    fps: float
    container: str  # mp4, mkv, webm
    channels: int
    sample_rate: int
    corner: str  # tl, tr, bl, br: where the face cam sits
    frac: float  # face-cam width as a fraction of the frame width
    face: str  # key of sources.FACES
    voice: str  # the streamer's voice pack
    co_voice: str  # the co-streamer's voice pack
    music: str
    seed: int
    vfr: bool = False

    @property
    def video_codec(self) -> str:
        return "vp9" if self.container == "webm" else "h264"

    @property
    def audio_codec(self) -> str:
        return "opus" if self.container == "webm" else "aac"

    @property
    def file(self) -> str:
        return f"{self.name}.{self.container}"

    @property
    def layout(self) -> str:
        return f"{self.corner}-{round(self.frac * 100)}"


SUITE: tuple[VodSpec, ...] = (
    VodSpec("seed1-720p30", "seed", 360, 1280, 720, 30, "mp4", 2, 48000, "br", 0.25, "ada", "British", "Pirate", "City.ogg", 101),
    VodSpec("seed2-480p30", "seed", 330, 854, 480, 30, "mkv", 1, 44100, "tl", 0.22, "cal", "Default", "Surfer", "Castle.ogg", 102),
    VodSpec("pool1-1080p60", "pool", 300, 1920, 1080, 60, "mp4", 2, 48000, "bl", 0.30, "dan", "Mobster", "Default_uk", "Jungle.ogg", 103),
    VodSpec("pool2-720p-vp9", "pool", 300, 1280, 720, 30, "webm", 2, 48000, "tr", 0.18, "eli", "Classic", "HillBilly", "Nature.ogg", 104),
    VodSpec("pool3-portrait", "pool", 300, 720, 1280, 30, "mp4", 2, 44100, "tr", 0.35, "bea", "Singer", "Russian", "EarthRise.ogg", 105),
    VodSpec("pool4-vfr", "pool", 420, 1280, 720, 30, "mkv", 1, 48000, "br", 0.30, "hal", "Russian", "Default_es", "Desert.ogg", 106, vfr=True),
    VodSpec("heldout1-720p30", "heldout", 330, 1280, 720, 30, "mp4", 2, 44100, "br", 0.25, "ada", "British", "Default_pl", "Freeway.ogg", 107),
    VodSpec("heldout2-540p-vp9", "heldout", 390, 960, 540, 25, "webm", 2, 48000, "tr", 0.32, "gus", "Surfer", "Mobster", "Golf.ogg", 108),
)
#: the smoke test's one short VOD (seed, pool and held-out at once)
SMOKE = VodSpec("smoke-240p", "smoke", 100, 426, 240, 15, "mp4", 1, 44100, "br", 0.3, "dan", "Default", "Pirate", "City.ogg", 199)


@dataclass
class Event:
    start: float
    end: float
    kind: str  # highlight, loud_sfx, shout, face
    reaction: tuple[str, ...] = ()  # face-cam effects (highlights and face distractors)
    level_db: float = 0.0  # RMS level of the loud cue (shout or sfx), dBFS

    @property
    def shout(self) -> bool:
        return self.kind in ("highlight", "shout")

    @property
    def reacts(self) -> bool:
        return self.kind in ("highlight", "face")


@dataclass
class Plan:
    spec: VodSpec
    events: list[Event]
    facecam: tuple[int, int, int, int]  # x, y, w, h of the face cam (border included), source pixels
    extra: dict = field(default_factory=dict)

    def truth(self) -> dict:
        s = self.spec
        return {
            "version": VERSION, "name": s.name, "file": s.file, "split": s.split, "duration": s.duration,
            "width": s.width, "height": s.height, "fps": s.fps, "vfr": s.vfr, "container": s.container,
            "video_codec": s.video_codec, "audio_codec": s.audio_codec, "channels": s.channels,
            "sample_rate": s.sample_rate, "face": s.face, "voice": s.voice, "co_voice": s.co_voice,
            "layout": {"name": s.layout, "corner": s.corner, "frac": s.frac},
            "facecam": list(self.facecam),
            "highlights": [_event_dict(e) for e in self.events if e.kind == "highlight"],
            "distractors": [_event_dict(e) for e in self.events if e.kind != "highlight"],
            **self.extra,
        }


def _event_dict(e: Event) -> dict:
    d = asdict(e)
    d["reaction"] = list(e.reaction)
    d["level_db"] = round(e.level_db, 2)
    return d


def facecam_box(spec: VodSpec) -> tuple[int, int, int, int]:
    """The face cam's box (4:3, even sizes) in its corner, a margin from the frame's edges."""
    w = int(round(spec.width * spec.frac / 2)) * 2
    h = int(round(w * 3 / 4 / 2)) * 2
    m = int(round(min(spec.width, spec.height) * 0.03 / 2)) * 2
    x = m if spec.corner[1] == "l" else spec.width - w - m
    y = m if spec.corner[0] == "t" else spec.height - h - m
    return (x, y, w, h)


def plan_events(spec: VodSpec) -> list[Event]:
    """Highlights and distractors placed at random, non-overlapping, 12 s apart, clear of both ends."""
    rng = np.random.default_rng(spec.seed)
    n_high = max(2, int(round(spec.duration / 60)))
    kinds = ["highlight"] * n_high + [DISTRACTOR_KINDS[(i + spec.seed) % 3] for i in range(n_high)]
    rng.shuffle(kinds)
    lengths = rng.uniform(3.0, 10.0, size=len(kinds))
    gap, edge = 12.0, 12.0
    free = spec.duration - 2 * edge - float(lengths.sum()) - gap * (len(kinds) - 1)
    if free < 0:
        raise ValueError(f"{spec.name}: {len(kinds)} events do not fit in {spec.duration} s")
    # spread the slack at random between the events
    cuts = np.sort(rng.uniform(0, free, size=len(kinds)))
    slack = np.diff(np.concatenate([[0.0], cuts]))
    events, t = [], edge
    for kind, ln, sl in zip(kinds, lengths, slack, strict=True):
        t += float(sl)
        reaction = REACTIONS[int(rng.integers(len(REACTIONS)))] if kind in ("highlight", "face") else ()
        level = float(rng.uniform(-16.0, -10.0)) if kind in ("highlight", "shout", "loud_sfx") else 0.0
        events.append(Event(round(t, 2), round(t + float(ln), 2), kind, reaction, level))
        t += float(ln) + gap
    return events


def make_plan(spec: VodSpec) -> Plan:
    return Plan(spec, plan_events(spec), facecam_box(spec))


def seed_clips(plan: Plan, seed: int = 0) -> list[tuple[float, float, str]]:
    """The seed labels of a VOD: its highlights plus about twice as many normal clips picked at
    random from the time outside highlights (a person's quick picks: they may land on a distractor)."""
    rng = np.random.default_rng(plan.spec.seed * 7 + seed)
    highs = [(e.start, e.end) for e in plan.events if e.kind == "highlight"]
    clips = [(a, b, "highlight") for a, b in highs]
    busy = [(a - 2.0, b + 2.0) for a, b in highs]
    want, tries = 2 * len(highs), 0
    while want > 0 and tries < 2000:
        tries += 1
        ln = float(rng.uniform(3.0, 10.0))
        s = float(rng.uniform(2.0, plan.spec.duration - ln - 2.0))
        if any(a < s + ln and s < b for a, b in busy):
            continue
        clips.append((round(s, 2), round(s + ln, 2), "normal"))
        busy.append((s - 1.0, s + ln + 1.0))
        want -= 1
    return sorted(clips)
