"""Render one benchmark VOD: one ffmpeg filter graph for the picture, a numpy mix for the sound.

Picture: four real pictures, pre-scaled once into one atlas image, panned with ``crop`` x/y
expressions of ``t`` (a scene cut is a jump to another tile); game explosions at loud-sfx
moments shake and flash the game picture; the face cam is a real photo cropped with small
``sin`` offsets (idle motion) plus, during reactions, strong shake, a tighter crop from a larger
copy (zoom) and white flashes; then a border, the channel logo and a clock. Sound: the
streamer's and a co-streamer's recorded voice lines as chatter, game music and effects; shouts
(the streamer's lines, loud) at highlights and shout distractors, loud game effects at loud-sfx
distractors; mixed in numpy at the VOD's sample rate and muxed in the same ffmpeg run.
"""

from __future__ import annotations

import logging
import math
import subprocess
import wave
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.realistic import sources as S
from benchmarks.realistic.plan import Event, Plan

log = logging.getLogger("realistic.render")


class RenderError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------
# pictures prepared once per VOD (Pillow, a few hundred milliseconds)
# ------------------------------------------------------------------------------------------


def _cover(img: Image.Image, w: int, h: int) -> Image.Image:
    """Scale to cover w x h and centre-crop."""
    scale = max(w / img.width, h / img.height)
    sw, sh = max(w, math.ceil(img.width * scale)), max(h, math.ceil(img.height * scale))
    img = img.convert("RGB").resize((sw, sh), Image.Resampling.BICUBIC)
    x, y = (sw - w) // 2, (sh - h) // 2
    return img.crop((x, y, x + w, y + h))


def _even(v: float) -> int:
    return max(2, int(round(v / 2)) * 2)


def _tile(img: Image.Image, w: int, h: int) -> Image.Image:
    out = Image.new("RGBA", (w, h))
    for x in range(0, w, img.width):
        for y in range(0, h, img.height):
            out.paste(img, (x, y))
    return out


def game_scene(src: S.Sources, theme: str, w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A hedgewars-like scene from a theme's art: sky, horizon strip, textured hilly terrain."""
    base = f"{S.HW}/Themes/{theme}"
    scene = _cover(Image.open(src.path(f"{base}/Sky.png")), w, h).convert("RGBA")
    hor = Image.open(src.path(f"{base}/horizont.png")).convert("RGBA")
    hh = max(2, int(h * 0.45))
    hor = hor.resize((max(2, int(hor.width * hh / hor.height)), hh), Image.Resampling.BICUBIC)
    strip = _tile(hor, w, hh)
    scene.alpha_composite(strip, (0, int(h * 0.62) - hh))
    land = Image.open(src.path(f"{base}/LandTex.png")).convert("RGBA")
    scale = h / 900
    land = land.resize((max(2, int(land.width * scale)), max(2, int(land.height * scale))))
    ground = _tile(land, w, h)
    xs = np.arange(w)
    k = rng.uniform(1.5, 4.0, size=3) * 2 * math.pi / w
    top = h * (0.66 + 0.07 * np.sin(k[0] * xs + rng.uniform(0, 6)) + 0.04 * np.sin(k[1] * 2.3 * xs)
               + 0.02 * np.sin(k[2] * 5.1 * xs))
    mask = (np.arange(h)[:, None] >= top[None, :]).astype(np.uint8) * 255
    ground.putalpha(Image.fromarray(mask))
    scene.alpha_composite(ground)
    return scene.convert("RGB")


def prepare_images(plan: Plan, src: S.Sources, work: Path, rng: np.random.Generator) -> dict:
    s = plan.spec
    tw, th = _even(s.width * 1.3), _even(s.height * 1.3)
    themes = [S.THEMES[int(k)] for k in rng.choice(len(S.THEMES), size=3, replace=False)]
    photo = S.PHOTOS[int(rng.integers(len(S.PHOTOS)))]
    atlas = Image.new("RGB", (2 * tw, 2 * th))
    for i, theme in enumerate(themes):
        atlas.paste(game_scene(src, theme, tw, th, rng), ((i % 2) * tw, (i // 2) * th))
    atlas.paste(_cover(Image.open(src.path(photo)), tw, th), (tw, th))
    atlas.save(work / "atlas.png", compress_level=1)
    kind, rel, (fx, fy, fw, fh) = S.FACES[s.face]
    face = Image.open(src.path(rel)).convert("RGB").crop((fx, fy, fx + fw, fy + fh))
    _, _, cw, ch = plan.facecam
    border = _even(max(2, cw * 0.02))
    iw, ih = cw - 2 * border, ch - 2 * border
    _cover(face, _even(iw * 1.25), _even(ih * 1.25)).save(work / "face.png")
    _cover(face, _even(iw * 1.9), _even(ih * 1.9)).save(work / "face_zoom.png")
    logo = Image.open(src.path(S.LOGO)).convert("RGBA")
    lw = _even(s.width * 0.09)
    logo.resize((lw, _even(lw * logo.height / logo.width))).save(work / "logo.png")
    return {"tile": (tw, th), "backgrounds": [*themes, photo], "inner": (iw, ih),
            "border": border}


# ------------------------------------------------------------------------------------------
# the filter graph
# ------------------------------------------------------------------------------------------


def _between(events: list[Event], pred) -> str:
    terms = [f"between(t,{e.start:.3f},{e.end:.3f})" for e in events if pred(e)]
    return "+".join(terms) or "0"


def _scenes(duration: float, rng: np.random.Generator) -> list[tuple[float, int, float, float, float]]:
    """(start, tile, pan period, phase, vertical share) per scene; cuts every 25-75 s."""
    out, t, last = [], 0.0, -1
    while t < duration:
        tile = int(rng.choice(4, p=[0.3, 0.3, 0.3, 0.1]))
        if tile == last:
            tile = (tile + 1) % 3
        out.append((t, tile, float(rng.uniform(20, 60)), float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.2, 0.8))))
        last = tile
        t += float(rng.uniform(25, 75))
    return out


def _pan_expr(scenes, tw: int, th: int, w: int, h: int, axis: str, shake: str) -> str:
    mx, my = tw - w, th - h
    expr = "0"
    for start, tile, period, phase, vshare in scenes:  # the latest scene that has started wins
        if axis == "x":
            base, amp = (tile % 2) * tw, mx
            pos = f"{base}+{amp / 2:.1f}*(1+sin(2*PI*(t-{start:.2f})/{period:.2f}+{phase:.3f}))"
        else:
            base, amp = (tile // 2) * th, my
            pos = f"{base}+{amp * vshare:.1f}+{amp * 0.15:.1f}*sin(2*PI*(t-{start:.2f})/{period * 1.7:.2f})"
        expr = f"if(gte(t,{start:.2f}),{pos},{expr})"
    lim = mx if axis == "x" else my
    base_clip = f"({expr})"
    return f"{base_clip}+({shake})*{lim * 0.05:.1f}*sin(2*PI*13*t+{1 if axis == 'y' else 0})"


def video_graph(plan: Plan, info: dict, rng: np.random.Generator, font: Path) -> str:
    s = plan.spec
    ev = plan.events
    tw, th = info["tile"]
    iw, ih = info["inner"]
    b = info["border"]
    fps = s.fps
    sfx_on = _between(ev, lambda e: e.kind == "loud_sfx")
    scenes = _scenes(s.duration, rng)
    bgx = _pan_expr(scenes, tw, th, s.width, s.height, "x", sfx_on)
    bgy = _pan_expr(scenes, tw, th, s.width, s.height, "y", sfx_on)
    shake_on = _between(ev, lambda e: e.reacts and "shake" in e.reaction)
    zoom_on = _between(ev, lambda e: e.reacts and "zoom" in e.reaction)
    flash = "+".join(f"between(t,{e.start:.3f},{e.end:.3f})*lt(mod(t-{e.start:.3f},0.5),0.22)"
                     for e in ev if e.reacts and "flash" in e.reaction) or "0"
    bg_flash = "+".join(f"between(t,{e.start:.3f},{e.end:.3f})*lt(mod(t-{e.start:.3f},0.7),0.12)"
                        for e in ev if e.kind == "loud_sfx") or "0"
    p1, p2, ph = (float(v) for v in rng.uniform([4.0, 9.0, 0.0], [7.0, 15.0, 6.0]))

    def face_xy(big_w: int, big_h: int) -> tuple[str, str]:
        mx, my = (big_w - iw) / 2, (big_h - ih) / 2
        idle_x = f"{mx:.1f}+{iw * 0.025:.1f}*sin(2*PI*t/{p1:.2f}+{ph:.2f})+{iw * 0.012:.1f}*sin(2*PI*t/{p2:.2f})"
        idle_y = f"{my:.1f}+{ih * 0.02:.1f}*sin(2*PI*t/{p2:.2f}+{ph:.2f})+{ih * 0.01:.1f}*sin(2*PI*t/{p1 * 1.3:.2f})"
        sx = f"({shake_on})*{iw * 0.09:.1f}*(sin(2*PI*7.3*t)+0.6*sin(2*PI*11.9*t+1))"
        sy = f"({shake_on})*{ih * 0.09:.1f}*(sin(2*PI*6.1*t+2)+0.6*sin(2*PI*13.7*t))"
        return f"{idle_x}+{sx}", f"{idle_y}+{sy}"

    fw, fh = _even(iw * 1.25), _even(ih * 1.25)
    zw, zh = _even(iw * 1.9), _even(ih * 1.9)
    fx, fy = face_xy(fw, fh)
    zx, zy = face_xy(zw, zh)
    cx, cy, cw, ch = plan.facecam
    border_color = ["0x9146FF", "0x00C8FF", "0xFF4060", "0x40E080", "0xFFC020", "0xFFFFFF"][s.seed % 6]
    fsize = _even(s.height * 0.035)
    left_cam = s.corner[1] == "l"
    chat_x = int(s.width * (0.76 if left_cam else 0.02))
    clock_x = "w-tw-w*0.02" if left_cam else "w*0.02"
    loop = f"format=yuv420p,loop=loop=-1:size=1:start=0,setpts=N/({fps}*TB)"
    parts = [
        f"[0:v]{loop},crop=w={s.width}:h={s.height}:x='{bgx}':y='{bgy}',"
        f"drawbox=x=0:y=0:w=iw:h=ih:color=0xFFF0C0@0.45:t=fill:enable='{bg_flash}',"
        f"drawbox=x={chat_x}:y={int(s.height * 0.55)}:w={int(s.width * 0.22)}:h={int(s.height * 0.3)}:color=black@0.45:t=fill[bg]",
        f"[1:v]{loop},crop=w={iw}:h={ih}:x='{fx}':y='{fy}'[f1]",
        f"[2:v]{loop},crop=w={iw}:h={ih}:x='{zx}':y='{zy}'[f2]",
        f"[f1][f2]overlay=0:0:enable='{zoom_on}',"
        f"drawbox=x=0:y=0:w=iw:h=ih:color=white@0.55:t=fill:enable='{flash}',"
        f"pad=w={cw}:h={ch}:x={b}:y={b}:color={border_color}[cam]",
        f"[bg][cam]overlay=x={cx}:y={cy}[v1]",
        f"[3:v]format=yuva420p,loop=loop=-1:size=1:start=0,setpts=N/({fps}*TB)[lg]",
        f"[v1][lg]overlay=x={int(s.width * 0.5 - s.width * 0.045)}:y={int(s.height * 0.02)}:format=auto,"
        f"drawtext=fontfile='{font}':text='LIVE %{{pts\\:hms}}':x={clock_x}:y=h-th-h*0.03:fontsize={fsize}:"
        f"fontcolor=white:box=1:boxcolor=black@0.5:boxborderw={max(2, fsize // 4)}",
    ]
    tail = ",format=yuv420p"
    if s.vfr:  # drop frames in irregular runs: variable frame rate with the original timestamps
        tail += ",select='not(between(mod(n,37),5,9)+between(mod(n,23),3,4)+between(mod(n,101),40,60))'"
    parts[-1] += tail + "[v]"
    return ";".join(parts)


# ------------------------------------------------------------------------------------------
# the sound
# ------------------------------------------------------------------------------------------


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _db(level: float) -> float:
    return 10 ** (level / 20)


class Mixer:
    def __init__(self, duration: float, rate: int, src: S.Sources):
        self.rate, self.src = rate, src
        self.n = int(round(duration * rate))
        self.tracks: dict[str, np.ndarray] = {}

    def track(self, name: str) -> np.ndarray:
        if name not in self.tracks:
            self.tracks[name] = np.zeros(self.n, dtype=np.float32)
        return self.tracks[name]

    def put(self, name: str, clip: np.ndarray, t: float, level_db: float) -> float:
        """Add ``clip`` at ``t`` scaled to RMS ``level_db``; returns the time it ends."""
        a = int(t * self.rate)
        if a >= self.n:
            return t
        part = clip[: self.n - a] * (_db(level_db) / _rms(clip))
        self.track(name)[a : a + len(part)] += part
        return t + len(clip) / self.rate

    def clip(self, path: Path) -> np.ndarray:
        x = self.src.pcm(path, self.rate)
        nz = np.flatnonzero(np.abs(x) > 0.01 * (np.abs(x).max() + 1e-9))
        return x[nz[0] : nz[-1] + 1] if len(nz) else x


def _lines(src: S.Sources, pack: str, names: tuple[str, ...]) -> list[Path]:
    out = []
    for n in names:
        try:
            out.append(src.voice(pack, n))
        except S.SourceError:
            continue
    if not out:
        raise RenderError(f"voice pack {pack} has none of the lines asked for")
    return out


def _inside(t0: float, t1: float, spans: list[tuple[float, float]]) -> bool:
    return any(a < t1 and t0 < b for a, b in spans)


def _chatter(mx: Mixer, name: str, lines: list[Path], rng, level: tuple[float, float],
             avoid: list[tuple[float, float]], talk: float) -> None:
    """Bursts of voice lines with short gaps, pauses between bursts; never inside ``avoid``."""
    t, dur = float(rng.uniform(0.5, 3.0)), mx.n / mx.rate
    while t < dur - 1:
        for _ in range(int(rng.integers(2, 7))):
            clip = mx.clip(lines[int(rng.integers(len(lines)))])
            ln = len(clip) / mx.rate
            if not _inside(t - 0.3, t + ln + 0.3, avoid):
                mx.put(name, clip, t, float(rng.uniform(*level)))
            t += ln + float(rng.uniform(0.12, 0.6))
        t += float(rng.uniform(0.8, 6.0)) / talk


def _fill(mx: Mixer, name: str, paths: list[Path], rng, start: float, end: float, level: float,
          gap: tuple[float, float]) -> None:
    """Back-to-back clips covering [start, end), each at ``level`` +- 2 dB, cut at ``end``."""
    t = start
    while t < end - 0.2:
        clip = mx.clip(paths[int(rng.integers(len(paths)))])
        room = int((end - t) * mx.rate)
        clip = clip[:room]
        fade = min(len(clip), int(0.02 * mx.rate))
        if fade:
            clip = clip.copy()
            clip[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
        t = mx.put(name, clip, t, level + float(rng.uniform(-2, 2))) + float(rng.uniform(*gap))


def mix_audio(plan: Plan, src: S.Sources, rng: np.random.Generator) -> np.ndarray:
    """The VOD's soundtrack, (samples, channels) float32 in [-1, 1]."""
    s, ev = plan.spec, plan.events
    mx = Mixer(s.duration, s.sample_rate, src)
    music = mx.clip(src.music(s.music))
    reps = int(np.ceil(mx.n / len(music)))
    mx.track("music")[:] = np.tile(music, reps)[: mx.n] * (_db(-31.0) / _rms(music))
    ambient = [src.sound(n) for n in S.AMBIENT_SFX]
    t = 2.0
    while t < s.duration - 2:
        mx.put("game", mx.clip(ambient[int(rng.integers(len(ambient)))]), t, float(rng.uniform(-33, -24)))
        t += float(rng.uniform(1.5, 7.0))
    shouts = _lines(src, s.voice, S.SHOUTS)
    calm = _lines(src, s.voice, S.CALM + S.SHOUTS)
    loud_spans = [(e.start, e.end) for e in ev if e.shout]
    _chatter(mx, "voice", calm, rng, (-27.0, -21.0), loud_spans, talk=1.0)
    _chatter(mx, "co", _lines(src, s.co_voice, S.CALM + S.SHOUTS), rng, (-31.0, -25.0), [], talk=0.5)
    for e in ev:
        if e.kind == "face":  # the streamer keeps talking calmly through a face-only reaction
            _fill(mx, "voice", calm, rng, e.start, e.end, -24.0, (0.3, 0.9))
        elif e.shout:
            _fill(mx, "voice", shouts, rng, e.start, e.end, e.level_db, (0.02, 0.2))
        elif e.kind == "loud_sfx":
            _fill(mx, "game", [src.sound(n) for n in S.LOUD_SFX], rng, e.start, e.end, e.level_db, (0.0, 0.15))
    # a few single excited lines in normal time: shorter than any highlight, softer than a shout
    busy = [(e.start - 3, e.end + 3) for e in ev]
    for _ in range(int(s.duration / 45)):
        t = float(rng.uniform(5, s.duration - 5))
        if not _inside(t, t + 2, busy):
            mx.put("voice", mx.clip(shouts[int(rng.integers(len(shouts)))]), t, float(rng.uniform(-20, -15)))
    tr = mx.tracks
    centre = tr["voice"] + tr["game"] + tr["music"]
    co = tr["co"]
    if s.channels == 1:
        out = (centre + co)[:, None]
    else:
        out = np.stack([centre + 0.75 * co, centre + 0.35 * co], axis=1)
    return np.tanh(out * 1.1).astype(np.float32)  # soft limit, like a streamer's mic chain


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


# ------------------------------------------------------------------------------------------
# encode
# ------------------------------------------------------------------------------------------


def encode_args(plan: Plan, threads: int) -> list[str]:
    s = plan.spec
    fps = s.fps
    if s.video_codec == "vp9":
        bitrate = f"{max(500, int(s.width * s.height * fps / 12000))}k"
        v = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1",
             "-b:v", bitrate, "-g", str(int(fps * 4)), "-threads", str(threads)]
        a = ["-c:a", "libopus", "-b:a", "96k"]
    else:
        v = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "24", "-g", str(int(fps * 2)),
             "-threads", str(threads)]
        a = ["-c:a", "aac", "-b:a", "128k"]
    if s.vfr:
        v += ["-fps_mode", "vfr", "-video_track_timescale", "90000"] if s.container == "mp4" else ["-fps_mode", "vfr"]
    return [*v, "-pix_fmt", "yuv420p", *a, "-ar", str(s.sample_rate), "-ac", str(s.channels)]


def render(plan: Plan, src: S.Sources, out: Path, work: Path, threads: int = 2) -> dict:
    """Write the VOD to ``out`` (through a temporary name); returns extra truth fields."""
    s = plan.spec
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(s.seed * 1009 + 17)
    info = prepare_images(plan, src, work, rng)
    graph = video_graph(plan, info, rng, src.path(S.FONT))
    audio = mix_audio(plan, src, rng)
    write_wav(work / "audio.wav", audio, s.sample_rate)
    (work / "graph.txt").write_text(graph)
    tmp = out.with_name(f".{out.stem}.part{out.suffix}")
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-framerate", str(s.fps), "-i", str(work / "atlas.png"),
           "-framerate", str(s.fps), "-i", str(work / "face.png"),
           "-framerate", str(s.fps), "-i", str(work / "face_zoom.png"),
           "-framerate", str(s.fps), "-i", str(work / "logo.png"),
           "-i", str(work / "audio.wav"),
           "-filter_complex_script", str(work / "graph.txt"), "-map", "[v]", "-map", "4:a",
           "-t", f"{s.duration:.3f}", *encode_args(plan, threads), str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RenderError(f"ffmpeg failed on {s.name}: {proc.stderr.strip()[-400:]}")
    tmp.replace(out)
    return {"backgrounds": info["backgrounds"], "face_source": S.FACES[s.face][:2]}
