"""Generated VODs with planted events and their ground truth, for tests, benchmarks and the demo.

A *highlight* needs both a picture event (a filled box in the face-cam corner) and a loud sound
(a white-noise "scream"); *distractors* carry only one of them, so a model must use both senses.
Throughout the VOD, word-length tone bursts with quiet gaps stand in for speech: good cuts fall
in the gaps. Everything is made by ffmpeg's lavfi sources; nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from autoclip.errors import MediaError

log = logging.getLogger(__name__)

KINDS = ("highlight", "visual", "audio")
EVENT_COLOR = "0xE02020"  # the planted picture event: a red box filling most of the face cam
FACECAM_COLOR = "0x303848"


@dataclass(frozen=True)
class Event:
    start: float
    end: float
    kind: str  # "highlight" (picture + loud sound), "visual" (picture only), "audio" (sound only)

    @property
    def visual(self) -> bool:
        return self.kind in ("highlight", "visual")

    @property
    def loud(self) -> bool:
        return self.kind in ("highlight", "audio")


@dataclass
class SynthVod:
    path: Path
    duration: float
    events: list[Event]
    words: list[tuple[float, float]] = field(default_factory=list)
    facecam: tuple[int, int, int, int] = (0, 0, 0, 0)
    width: int = 320
    height: int = 180

    def highlights(self) -> list[Event]:
        return [e for e in self.events if e.kind == "highlight"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def facecam_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The bottom-right face-cam panel where picture events are drawn."""
    x, y = round(width * 0.7), round(height * 0.6)
    return (x, y, width - x, height - y)


def plan_events(
    duration: float,
    *,
    highlights: int,
    visual: int = 0,
    audio: int = 0,
    seed: int = 0,
    length: tuple[float, float] = (4.0, 6.0),
    gap: float = 6.0,
) -> list[Event]:
    """Place events at random, non-overlapping, at least ``gap`` apart and clear of both ends."""
    kinds = ["highlight"] * highlights + ["visual"] * visual + ["audio"] * audio
    rng = np.random.default_rng(seed)
    slot = length[1] + gap
    n_slots = int((duration - gap) // slot)
    if n_slots < len(kinds):
        raise ValueError(f"{len(kinds)} events of up to {length[1]} s with {gap} s gaps need more than {duration} s")
    slots = np.sort(rng.choice(n_slots, size=len(kinds), replace=False))
    rng.shuffle(kinds)
    events = []
    for s, kind in zip(slots, kinds, strict=True):
        ln = float(rng.uniform(*length))
        start = gap + s * slot + float(rng.uniform(0, slot - gap - ln + 1e-9))
        events.append(Event(round(float(start), 2), round(float(start + ln), 2), kind))
    return events


def plan_words(duration: float, seed: int = 0) -> list[tuple[float, float]]:
    """Speech-like bursts: 0.3-0.7 s on, 0.5-1.2 s of quiet between them."""
    rng = np.random.default_rng(seed + 7919)
    words, t = [], float(rng.uniform(0.2, 1.0))
    while t < duration - 0.8:
        ln = float(rng.uniform(0.3, 0.7))
        words.append((round(t, 3), round(t + ln, 3)))
        t += ln + float(rng.uniform(0.5, 1.2))
    return words


def _between(ranges: list[tuple[float, float]]) -> str:
    return "+".join(f"between(t,{a:.3f},{b:.3f})" for a, b in ranges) or "0"


def _word_gate(words: list[tuple[float, float]]) -> str:
    # periodic-free gate: a sum of windows would be long for hours of words, so chunk it with
    # nested if() on time to keep each frame's evaluation short
    if not words:
        return "0"
    chunks, size = [], 40
    for i in range(0, len(words), size):
        part = words[i : i + size]
        chunks.append((part[0][0], part[-1][1], _between(part)))
    expr = "0"
    for lo, hi, inner in reversed(chunks):
        expr = f"if(between(t,{lo:.3f},{hi:.3f}),{inner},{expr})"
    return expr


def _per_event(values: Sequence[float], events: list[Event], name: str) -> list[float]:
    out = [float(v) for v in values]
    if len(out) != len(events) or any(not 0 < v <= 1 for v in out):
        raise ValueError(f"{name} needs one number in (0, 1] per event ({len(events)} events)")
    return out


def _scaled_boxes(events: list[Event], sizes: list[float], colors: list[str], box: tuple[int, int, int, int]) -> str:
    """One drawbox per picture event in its colour, ``size`` of the full event box, centred in it."""
    x, y, w, h = box
    parts = []
    for e, size, color in zip(events, sizes, colors, strict=True):
        if not e.visual:
            continue
        bw, bh = max(2, round(w * size)), max(2, round(h * size))
        parts.append(f"drawbox=x={x + (w - bw) // 2}:y={y + (h - bh) // 2}:w={bw}:h={bh}:"
                     f"color={color}:t=fill:enable='between(t,{e.start:.3f},{e.end:.3f})'")
    return ",".join(parts) or "null"


def _loud_expr(events: list[Event], gains: list[float] | None) -> str:
    if gains is None:
        return _between([(e.start, e.end) for e in events if e.loud])
    terms = [f"{g:.4f}*between(t,{e.start:.3f},{e.end:.3f})" for e, g in zip(events, gains, strict=True) if e.loud]
    return "+".join(terms) or "0"


def make_vod(
    path: str | Path,
    duration: float,
    events: list[Event],
    *,
    width: int = 320,
    height: int = 180,
    fps: int = 30,
    seed: int = 0,
    audio: bool = True,
    words: bool = True,
    crf: int = 30,
    preset: str = "ultrafast",
    extra_output_args: list[str] | None = None,
    event_size: Sequence[float] | None = None,
    event_gain: Sequence[float] | None = None,
    event_color: Sequence[str] | None = None,
    picture_noise: int = 0,
    noise_amplitude: float = 0.02,
    noise_color: str = "pink",
) -> SynthVod:
    """Encode a VOD with the planted ``events`` to ``path`` (H.264/AAC; container from the suffix).

    ``event_size`` / ``event_gain`` (one number in (0, 1] per event, default all 1) make events
    weaker: the picture event's box is drawn at that fraction of its full width and height
    (centred), the loud sound at that fraction of its full amplitude; ``event_color`` (one ffmpeg
    colour per event, default all ``EVENT_COLOR``) varies how picture events look. ``picture_noise`` (0-100)
    adds ffmpeg's temporal noise of that strength to every pixel, so small boxes are harder to see.
    ``noise_amplitude`` / ``noise_color`` set the background noise under everything (``white``
    noise at a level near a weak loud sound's makes that sound hard to hear).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fx, fy, fw, fh = facecam_box(width, height)
    visual = [(e.start, e.end) for e in events if e.visual]
    word_list = plan_words(duration, seed) if (audio and words) else []
    margin = max(2, fw // 10)
    vf = f"drawbox=x={fx}:y={fy}:w={fw}:h={fh}:color={FACECAM_COLOR}:t=fill,"
    if event_size is None and event_color is None:
        vf += (f"drawbox=x={fx + margin}:y={fy + margin}:w={fw - 2 * margin}:h={fh - 2 * margin}:"
               f"color={EVENT_COLOR}:t=fill:enable='{_between(visual)}'")
    else:
        sizes = [1.0] * len(events) if event_size is None else _per_event(event_size, events, "event_size")
        colors = [EVENT_COLOR] * len(events) if event_color is None else list(event_color)
        if len(colors) != len(events):
            raise ValueError(f"event_color needs one colour per event ({len(events)} events)")
        vf += _scaled_boxes(events, sizes, colors, (fx + margin, fy + margin, fw - 2 * margin, fh - 2 * margin))
    if picture_noise:
        vf += f",noise=alls={int(picture_noise)}:allf=t"
    loud_expr = _loud_expr(events, None if event_gain is None else _per_event(event_gain, events, "event_gain"))
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={duration}"]
    if audio:
        sr = 44100
        cmd += [
            "-f", "lavfi", "-i", f"anoisesrc=color={noise_color}:amplitude={noise_amplitude:g}:sample_rate={sr}:"
                                 f"duration={duration}:seed={seed}",
            "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate={sr}:duration={duration}",
            "-f", "lavfi", "-i", f"anoisesrc=color=white:amplitude=0.7:sample_rate={sr}:duration={duration}:seed={seed + 1}",
        ]
        af = (
            f"[2:a]volume=volume='0.3*({_word_gate(word_list)})':eval=frame[w];"
            f"[3:a]volume=volume='{loud_expr}':eval=frame[l];"
            "[1:a][w][l]amix=inputs=3:normalize=0:duration=first,pan=stereo|c0=c0|c1=c0[a]"
        )
        cmd += ["-filter_complex", f"[0:v]{vf}[v];{af}", "-map", "[v]", "-map", "[a]",
                "-c:a", "aac", "-b:a", "96k"]
    else:
        cmd += ["-vf", vf]
    cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-g", str(2 * fps),
            "-pix_fmt", "yuv420p", *(extra_output_args or []), str(path.resolve())]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MediaError(f"could not generate {path.name}: {proc.stderr.strip().splitlines()[-1:]}")
    vod = SynthVod(path, float(duration), list(events), word_list, (fx, fy, fw, fh), width, height)
    truth_path(path).write_text(json.dumps(vod.to_dict(), indent=1))
    return vod


def truth_path(path: str | Path) -> Path:
    """Where ``make_vod`` writes a generated VOD's planted truth (written last, after the video)."""
    return Path(str(path) + ".truth.json")


def cached(path: str | Path) -> SynthVod | None:
    """A VOD generated before at ``path`` (video and truth both there), or None."""
    return load_truth(path) if Path(path).exists() and truth_path(path).exists() else None


def planted_vod(path: str | Path, duration: float, *, seed: int, highlights: int, visual: int, audio: int) -> SynthVod:
    """The VOD at ``path`` with events from ``plan_events``, reusing one generated before."""
    vod = cached(path)
    if vod is None:
        events = plan_events(duration, highlights=highlights, visual=visual, audio=audio, seed=seed)
        vod = make_vod(Path(path), duration, events, seed=seed)
    return vod


def load_truth(path: str | Path) -> SynthVod:
    d = json.loads(truth_path(path).read_text())
    return SynthVod(
        Path(d["path"]), d["duration"], [Event(**e) for e in d["events"]],
        [tuple(w) for w in d["words"]], tuple(d["facecam"]), d["width"], d["height"],
    )


def sample_clips(vod: SynthVod, *, normal_per_event: float = 1.0, seed: int = 0, pad: float = 0.0) -> list[tuple[float, float, str]]:
    """Labelled clips for a synth VOD: each highlight as 'highlight'; distractors and quiet
    stretches as 'normal'. Returns (start, end, label)."""
    rng = np.random.default_rng(seed)
    clips = [(e.start + pad, e.end - pad, "highlight" if e.kind == "highlight" else "normal") for e in vod.events]
    busy = sorted((e.start - 2, e.end + 2) for e in vod.events)
    n_quiet = int(round(normal_per_event * len(vod.highlights())))
    tries = 0
    while n_quiet > 0 and tries < 1000:
        tries += 1
        s = float(rng.uniform(1, vod.duration - 6))
        e = s + float(rng.uniform(3, 5))
        if any(a < e and s < b for a, b in busy):
            continue
        clips.append((round(s, 2), round(e, 2), "normal"))
        busy.append((s - 2, e + 2))
        n_quiet -= 1
    return sorted(clips)
