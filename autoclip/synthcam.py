"""Generated VODs with a face cam: real face photos in a moving inset over moving "gameplay".

For tests and benchmarks of face-cam detection (``autoclip.facecam``). The faces are real
photographs that packages ship: scikit-image's astronaut (Eileen Collins) and matplotlib's
Grace Hopper sample image, each cut to a webcam-like 4:3 or 16:9 picture, mirrored or not. The
inset's content moves (the picture drifts and zooms slowly, with temporal sensor-like noise);
the gameplay under it is a mosaic of scikit-image's sample pictures scrolling across the frame,
with moving sprites and, optionally, a bordered "minimap" box with moving content (a stable
rectangle that holds no face). The truth is the inner picture of the inset, without its border.

Nothing is downloaded: the pictures come from installed packages (``scikit-image`` is a dev
dependency) and are written into the cache folder given, next to the VODs, at run time.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from autoclip.errors import MediaError

Box = tuple[int, int, int, int]
CORNERS = ("tl", "tr", "bl", "br")
#: (picture, crop box in it (x0, y0, x1, y1)): webcam-like cuts around the face
_FACES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "astronaut": ("astronaut", (40, 0, 472, 324)),       # 4:3, face about a quarter of the width
    "astronaut-wide": ("astronaut", (0, 10, 512, 298)),  # 16:9
    "hopper": ("hopper", (0, 0, 512, 384)),              # 4:3, face about 40 % of the width
    "hopper-wide": ("hopper", (0, 60, 512, 348)),        # 16:9
}
FACES = tuple(_FACES)


@dataclass(frozen=True)
class CamSpec:
    """One generated VOD: frame size, where the face cam sits (None: no face cam) and how it looks."""

    width: int
    height: int
    corner: str | None = "br"
    frac: float = 0.25          # inset width (inner picture) / frame width
    face: str = "astronaut"
    mirror: bool = False
    border: int = 0             # border thickness in pixels around the inner picture
    margin: float = 0.02        # gap between inset and frame edges, fraction of frame width
    minimap: bool = False       # a bordered box with moving content and no face, in another corner
    face_in_game: bool = False  # a face photo scrolls through the gameplay (not a face cam)
    duration: float = 12.0
    fps: int = 8
    seed: int = 0

    def name(self) -> str:
        cam = "nocam" if self.corner is None else f"{self.corner}-{round(self.frac * 100)}-{self.face}-b{self.border}"
        extra = ("-mm" if self.minimap else "") + ("-gf" if self.face_in_game else "") + ("-m" if self.mirror else "")
        return f"cam-{self.width}x{self.height}-{cam}{extra}-s{self.seed}"

    def box(self) -> Box | None:
        """The true inner picture [x, y, w, h] in frame pixels (None without a face cam)."""
        if self.corner is None:
            return None
        x0, y0, x1, y1 = _FACES[self.face][1]
        w = _even(self.width * self.frac)
        h = _even(w * (y1 - y0) / (x1 - x0))
        gap = round(self.width * self.margin) + self.border
        x = gap if self.corner[1] == "l" else self.width - gap - w
        y = gap if self.corner[0] == "t" else self.height - gap - h
        return (x, y, w, h)


def _even(v: float) -> int:
    return max(2, int(round(v / 2)) * 2)


def _picture(name: str) -> np.ndarray:
    """RGB uint8 of a packaged sample picture (installed packages only; nothing is downloaded)."""
    if name == "hopper":
        import matplotlib.cbook as cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))
    import skimage.data

    img = getattr(skimage.data, name)()
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def _write_png(arr: np.ndarray, path: Path) -> Path:
    from PIL import Image

    if not path.exists():
        tmp = path.with_suffix(".tmp.png")
        Image.fromarray(arr).save(tmp)
        tmp.replace(path)
    return path


def face_png(folder: Path, spec: CamSpec) -> Path:
    """The face picture at 1/8 over the inset's size (it drifts inside the inset)."""
    from PIL import Image

    pic, (x0, y0, x1, y1) = _FACES[spec.face]
    arr = _picture(pic)[y0:y1, x0:x1]
    arr = np.ascontiguousarray(arr[:, ::-1] if spec.mirror else arr)
    _, _, w, h = spec.box() or (0, 0, 2, 2)
    big = Image.fromarray(arr).resize((w + w // 8, h + h // 8), Image.LANCZOS)
    return _write_png(np.asarray(big), folder / f"face-{spec.face}{'-m' if spec.mirror else ''}-{w}x{h}.png")


def gameplay_png(folder: Path, spec: CamSpec) -> Path:
    """A mosaic of 3 x 3 sample pictures, 1.5 times the frame, to scroll over (one with a face if asked)."""
    from PIL import Image

    names = ["coffee", "rocket", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "brick", "grass"]
    rng = np.random.default_rng(spec.seed)
    order = list(rng.permutation(names))
    if spec.face_in_game:
        order[4] = "astronaut"
    cw, ch = _even(spec.width * 1.5), _even(spec.height * 1.5)
    tw, th = -(-cw // 3), -(-ch // 3)
    canvas = Image.new("RGB", (cw, ch))
    for i in range(9):
        tile = Image.fromarray(_picture(order[i])).resize((tw, th))
        canvas.paste(tile, ((i % 3) * tw, (i // 3) * th))
    return _write_png(np.asarray(canvas), folder / f"game-{spec.width}x{spec.height}-{spec.seed}{'-f' if spec.face_in_game else ''}.png")


def _filters(spec: CamSpec) -> str:
    W, H, fps = spec.width, spec.height, spec.fps
    rng = np.random.default_rng(spec.seed)
    a, b = rng.uniform(0.3, 0.8, 2)
    n = round(spec.duration * fps)
    parts = [f"[0:v]loop=loop={n}:size=1:start=0,setpts=N/{fps}/TB,"
             f"crop={W}:{H}:x='(iw-{W})/2*(1+sin(t*{a:.3f}))':y='(ih-{H})/2*(1+sin(t*{b:.3f}+1))'"]
    for k in range(4):  # sprites: "players" crossing the screen
        sx, sy, sp = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.5, 2.0)
        size = _even(min(W, H) * rng.uniform(0.04, 0.09))
        color = ["red", "yellow", "cyan", "white"][k]
        parts.append(f"drawbox=x='mod({sx * W:.0f}+t*{sp * W / 10:.0f},{W})':y='{sy * H:.0f}+{H / 8:.0f}*sin(t*{sp:.2f})'"
                     f":w={size}:h={size}:color={color}:t=fill")
    chain = ",".join(parts)
    if spec.minimap:
        m = _even(min(W, H) * 0.22)
        chain += f"[bg0];[2:v]scale={m}:{m},pad={m + 8}:{m + 8}:4:4:color=gray[mm];[bg0][mm]overlay=x={W - m - 8 - 10}:y=10"
        if spec.corner == "tr":  # keep the minimap out of the face cam's corner
            chain = chain.replace(f"overlay=x={W - m - 8 - 10}:y=10", "overlay=x=10:y=10")
    box = spec.box()
    if box is None:
        return chain
    x, y, w, h = box
    cam = (f"[1:v]loop=loop={n}:size=1:start=0,setpts=N/{fps}/TB,crop={w}:{h}:"
           f"x='{w // 16}+{w // 16}*sin(t*1.1)':y='{h // 16}+{h // 16}*sin(t*0.7+2)',noise=alls=6:allf=t")
    if spec.border:
        bd = spec.border
        cam += f",pad={w + 2 * bd}:{h + 2 * bd}:{bd}:{bd}:color=0x6040c0"
    return f"{chain}[bg];{cam}[cam];[bg][cam]overlay=x={x - spec.border}:y={y - spec.border}:shortest=1"


def make(spec: CamSpec, folder: str | Path, *, preset: str = "veryfast", crf: int = 26) -> Path:
    """Encode ``spec`` into ``folder`` (reused when there already); returns the VOD's path.
    A ``<name>.mp4.json`` beside it holds the spec and the true box."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{spec.name()}.mp4"
    truth = Path(str(out) + ".json")
    if out.exists() and truth.exists():
        return out
    game = gameplay_png(folder, spec)
    face = face_png(folder, spec)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(game), "-i", str(face)]
    if spec.minimap:
        cmd += ["-f", "lavfi", "-i", f"life=s=64x64:rate={spec.fps}:mold=10:ratio=0.4:death_color=#202020:life_color=#30d030"]
    cmd += ["-filter_complex", _filters(spec) + "[v]", "-map", "[v]",
            "-t", f"{spec.duration}", "-r", str(spec.fps), "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
            "-g", str(2 * spec.fps), "-pix_fmt", "yuv420p", "-an", str(out.with_suffix(".tmp.mp4"))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MediaError(f"could not generate {out.name}: {proc.stderr.strip()[-400:]}")
    out.with_suffix(".tmp.mp4").replace(out)
    truth.write_text(json.dumps({"spec": asdict(spec), "box": spec.box()}))
    return out


def truth_box(vod: str | Path) -> Box | None:
    box = json.loads(Path(str(vod) + ".json").read_text())["box"]
    return tuple(box) if box else None


def iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two [x, y, w, h] boxes (0 when either is missing)."""
    if a is None or b is None:
        return 0.0
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def matrix() -> list[CamSpec]:
    """The full test matrix: every corner at 480p, 720p, 1080p and portrait 720x1280, inset
    widths 15-35 % of the frame, both faces, with and without a border or a minimap, plus VODs
    without a face cam (one with a face scrolling through the gameplay)."""
    sizes = [(854, 480), (1280, 720), (1920, 1080), (720, 1280)]
    fracs = [0.15, 0.2, 0.25, 0.3, 0.35]
    specs = []
    i = 0
    for w, h in sizes:
        for corner in CORNERS:
            specs.append(CamSpec(w, h, corner, frac=fracs[i % len(fracs)], face=FACES[i % len(FACES)],
                                 mirror=bool(i % 3 == 1), border=(0, 4, 2)[i % 3], minimap=bool(i % 4 == 2),
                                 seed=i))
            i += 1
    specs += [CamSpec(854, 480, None, minimap=True, seed=100), CamSpec(1280, 720, None, face_in_game=True, seed=101),
              CamSpec(720, 1280, None, seed=102)]
    return specs
