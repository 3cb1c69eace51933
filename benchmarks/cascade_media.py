"""Generated VODs for benchmarks/cascade.py, cached under $TMPDIR/autoclip-bench (outside the repo).

Each VOD's planted truth is its ``synth.plan_events`` plan, recomputed from the recipe (seed, counts),
so it never depends on a truth file beside the video. The 10-minute 720p30 VOD and the 1-hour one
(six stream-copied copies) have the same names and recipe as benchmarks/score_render.py's.

Those generated VODs are cheap to decode (x264 ultrafast: Constrained Baseline, no B-frames, flat
picture; ~75x real time here), far from a stream's encode. ``stream_like`` re-encodes one as a
streaming app's x264 would (High profile with CABAC and B-frames, preset veryfast, 4.5 Mbit/s
with a 9 Mbit buffer, a keyframe every 2 s) after light temporal grain (sensor and game-texture
detail that keeps the bit rate up): ~20x real time to decode here, as the issue's stream-like VOD.
The pictures and sound are the same recipe's, so the planted truth is unchanged.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autoclip import synth
from autoclip.fsutil import atomic_path

CACHE = Path(tempfile.gettempdir()) / "autoclip-bench"


@dataclass(frozen=True)
class Recipe:
    name: str
    duration: float
    width: int
    height: int
    fps: int
    seed: int
    counts: tuple[int, int, int]  # highlights, visual-only, audio-only distractors
    copies: int = 1  # >1: this many stream-copied copies of the single-copy recipe
    stream: bool = False  # re-encoded as a streaming app would (see the module's docstring)

    def base(self) -> Recipe:
        """The recipe one stream copy (``copies``) or one re-encode (``stream``) starts from."""
        if self.copies > 1:
            return Recipe(self.name.replace("60min", "10min"), self.duration / self.copies, self.width, self.height,
                          self.fps, self.seed, self.counts, stream=self.stream)
        return Recipe(self.name.replace("-stream", ""), self.duration, self.width, self.height, self.fps, self.seed,
                      self.counts)

    def events(self) -> list[synth.Event]:
        one = self.duration / self.copies
        plan = synth.plan_events(one, highlights=self.counts[0], visual=self.counts[1], audio=self.counts[2],
                                 seed=self.seed)
        return [synth.Event(e.start + k * one, e.end + k * one, e.kind) for k in range(self.copies) for e in plan]


VOD10 = Recipe("vod-10min-720p30.mp4", 600.0, 1280, 720, 30, 1, (8, 4, 4))
VOD60 = Recipe("vod-60min-720p30.mp4", 3600.0, 1280, 720, 30, 1, (8, 4, 4), copies=6)
VOD10_STREAM = Recipe("vod-10min-720p30-stream.mp4", 600.0, 1280, 720, 30, 1, (8, 4, 4), stream=True)
VOD60_STREAM = Recipe("vod-60min-720p30-stream.mp4", 3600.0, 1280, 720, 30, 1, (8, 4, 4), copies=6, stream=True)
VOD1080 = Recipe("vod-6min-1080p60.mp4", 360.0, 1920, 1080, 60, 3, (5, 2, 2))
TRAIN = [Recipe(f"cascade-train-{i}.mp4", 180.0, 1280, 720, 30, 20 + i, (5, 3, 3)) for i in range(3)]


def ensure(recipe: Recipe) -> Path:
    path = CACHE / recipe.name
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    if recipe.copies > 1:
        base = ensure(recipe.base())
        print(f"joining {recipe.copies} copies of {base.name} into {path.name}...", flush=True)
        listing = path.with_suffix(".ffconcat")
        listing.write_text("ffconcat version 1.0\n" + f"file '{base}'\n" * recipe.copies)
        with atomic_path(path) as tmp:
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                            str(listing), "-c", "copy", "-f", "mp4", str(tmp)], check=True)
        listing.unlink()
        return path
    if recipe.stream:
        base = ensure(recipe.base())
        print(f"re-encoding {base.name} as a stream would be ({path.name})...", flush=True)
        with atomic_path(path) as tmp:
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(base), "-vf", "noise=alls=3:allf=t",
                            "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-b:v", "4500k",
                            "-maxrate", "4500k", "-bufsize", "9M", "-g", str(2 * recipe.fps), "-c:a", "copy",
                            "-f", "mp4", str(tmp)], check=True)
        return path
    print(f"generating {path.name} ({recipe.duration:.0f} s, {recipe.width}x{recipe.height} {recipe.fps} fps)...",
          flush=True)
    with atomic_path(path) as tmp:
        synth.make_vod(tmp, recipe.duration, recipe.events(), width=recipe.width, height=recipe.height,
                       fps=recipe.fps, seed=recipe.seed, crf=28)
        synth.truth_path(tmp).unlink(missing_ok=True)  # the truth is the recipe's plan
    return path


if __name__ == "__main__":  # generate everything ahead of a benchmark run
    for r in (*TRAIN, VOD10, VOD60, VOD10_STREAM, VOD60_STREAM, VOD1080):
        ensure(r)
