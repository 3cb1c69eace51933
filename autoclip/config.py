"""Configuration: pydantic models for config.toml, the single source of truth for defaults.

The same models validate a user's file (errors name the key path), write the commented default
``config.toml`` (``autoclip init``) and generate the README's configuration reference, so the
three never drift. Paths in a config file are relative to the file's folder.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from autoclip.errors import ConfigError

ENV_VAR = "AUTOCLIP_CONFIG"
DEFAULT_NAME = "config.toml"

CropBox = Annotated[
    tuple[int, int, int, int],
    Field(description="[x, y, w, h] in display pixels (after rotation)"),
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class Octal(int):
    """An int written as an octal literal in config.toml (a file-mode mask)."""

    def __repr__(self) -> str:
        return f"0o{int(self):03o}"


def _octal(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value, 8)
        except ValueError:
            raise ValueError(f"{value!r} is not an octal mask such as 0o022") from None
    return value


Umask = Annotated[int, BeforeValidator(_octal), Field(ge=0, le=0o777), AfterValidator(Octal)]


class PathsConfig(Section):
    """Where a deployment keeps its files (relative to the config file's folder)."""

    inbox: Path = Field(Path("data/inbox"), description="watched folder: drop VODs here")
    reels: Path = Field(Path("data/reels"), description="finished reels, segment lists, EDLs")
    failed: Path = Field(Path("data/failed"), description="files that could not be processed, each with <name>.reason.json")
    done: Path = Field(Path("data/done"), description="processed VODs are moved here (empty string: leave them in the inbox)")
    models: Path = Field(Path("data/models"), description="the model registry (one folder per model, a `current` pointer)")
    database: Path = Field(Path("data/autoclip.db"), description="SQLite database: labels, review queue, jobs index, retrain history")
    cache: Path = Field(Path("data/cache"), description="decoded training features, keyed by VOD fingerprint and decode settings")
    jobs: Path = Field(Path("jobs"), description="one folder per job: state, scores, logs")
    umask: Umask = Field(Octal(0o022), description="umask of the daemon and the CLI: published reels, clips, cut lists, timelines and plots get 0666 minus it (0o022: 0644, readable by everyone; 0o002 with a shared group: see systemd/README.md)")


class CropProfile(Section):
    """A named face-cam box used for VODs whose file name matches ``match``."""

    match: str = Field(description="glob on the VOD's file name, e.g. 'valorant-*'")
    box: CropBox


class FramesConfig(Section):
    """How frames are sampled from a VOD for the model."""

    fps: float = Field(4.0, gt=0, le=30, description="frames sampled per second of video")
    size: int = Field(128, ge=32, le=512, description="model input size in pixels (square)")
    crop: CropBox | Literal["auto"] | None = Field(
        None,
        description="face-cam box [x, y, w, h] for every VOD; \"auto\": detected in each VOD (a matching profile wins; "
                    "a VOD without a confidently found face cam uses the whole frame); unset: the whole frame",
    )
    profiles: dict[str, CropProfile] = Field(
        default_factory=dict,
        description="named crop boxes chosen by file name: [frames.profiles.NAME] match = 'glob', box = [x, y, w, h]; first match wins",
    )
    batch: int = Field(64, ge=1, le=1024, description="frames per decoded batch (bounds memory)")

    def profile_for(self, vod: str | Path) -> tuple[int, int, int, int] | None:
        """The box of the first profile whose glob matches ``vod``'s file name, else None."""
        name = Path(vod).name
        for profile in self.profiles.values():
            if fnmatch.fnmatch(name, profile.match):
                return profile.box
        return None

    def crop_for(self, vod: str | Path) -> tuple[int, int, int, int] | None:
        """The fixed crop box for ``vod``: a matching profile's, else a fixed ``crop`` (None when
        ``crop`` is unset or "auto": use ``autoclip.cropbox.crop_box_for`` for the box a VOD uses)."""
        fixed = self.profile_for(vod)
        if fixed is not None:
            return fixed
        return None if self.crop == "auto" else self.crop


class AudioConfig(Section):
    """Audio decoding and the log-mel spectrogram window centred on each frame."""

    sample_rate: int = Field(16000, ge=4000, le=48000, description="mono sample rate in Hz")
    n_mels: int = Field(64, ge=16, le=256, description="mel bands")
    fmax: float = Field(8000.0, gt=0, description="highest mel frequency in Hz (at most sample_rate / 2)")
    window: float = Field(1.0, gt=0.1, le=5.0, description="seconds of audio per frame, centred on the frame time")
    hop: float = Field(0.01, gt=0.001, le=0.1, description="spectrogram hop in seconds")

    @model_validator(mode="after")
    def _fmax_below_nyquist(self) -> AudioConfig:
        if self.fmax > self.sample_rate / 2:
            raise ValueError(f"fmax {self.fmax:g} is above sample_rate / 2 = {self.sample_rate / 2:g}")
        return self


class MediaConfig(Section):
    """Safety limits for untrusted files."""

    max_pixels: int = Field(3840 * 2160, ge=64 * 64, description="largest width x height accepted (decompression bombs are refused)")
    demuxers: list[str] = Field(
        default_factory=lambda: ["mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "flv", "mpegts", "avi"],
        description="container formats (ffprobe's format names) accepted; anything else (HLS playlists, concat scripts) is refused",
    )
    truncation_tolerance: float = Field(2.0, ge=0, description="seconds the last decoded timestamp may fall short of the declared duration")
    ffmpeg: str = Field("ffmpeg", description="ffmpeg executable")
    ffprobe: str = Field("ffprobe", description="ffprobe executable")
    threads: int = Field(0, ge=0, le=64, description="video decoder threads per VOD (0: ffmpeg's choice, about one per core; 1: least CPU per frame on a busy machine)")


class ModelConfig(Section):
    """The highlight classifier."""

    kind: Literal["fused", "frames", "audio"] = Field("fused", description="which branches to use: frame ResNet-18, log-mel CNN, or both fused late")
    pretrained: str = Field("none", description="where a new model (one with no current model to warm-start from) starts: 'none' (random), 'imagenet' (torchvision weights from the local cache or download), 'self' (self-supervised audio-visual pretraining on this deployment's own VODs, see [pretrain]; run first when missing or out of date), or a path to a state dict")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout before the fusion head")
    context: int = Field(2, ge=0, le=8, description="neighbouring frames on each side a temporal layer sees (2, the default, at 4 fps: about a second); 0: each frame alone (the earlier single-frame network). A temporal model trains on independently drawn frames first, then on whole segments with batch-norm statistics and the per-frame parts frozen (see the README's learning notes)")
    motion: bool = Field(True, description="with context: a small frame-difference branch beside the ResNet (shakes, zooms, flashes)")
    combine: Literal["agree", "fused"] = Field("agree", description="what a fused model with context scores: 'agree', the geometric mean of its fused head's and both branch heads' probabilities (a calm face or a calm voice vetoes), or 'fused', the fused head alone; needs train.aux_weight > 0, else 'fused'")
    threads: int = Field(2, ge=1, le=64, description="torch CPU threads")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where scoring runs the model: 'auto' (CUDA when torch sees a GPU, else the CPU), 'cpu' or 'cuda'")


class ScoringConfig(Section):
    """How a VOD's frames are scored."""

    mode: Literal["cascade", "dense"] = Field("cascade", description="'cascade': an audio-only gate over the whole VOD, then frames decoded and scored only where it passes (plus margins); 'dense': every sampled frame decoded and scored")


class TrainConfig(Section):
    """Training, evaluation and promotion."""

    epochs: int = Field(8, ge=1, le=500, description="most passes over the training clips")
    batch_size: int = Field(32, ge=2, le=1024, description="samples per optimisation step")
    lr: float = Field(1e-3, gt=0, description="learning rate of the heads")
    backbone_lr_factor: float = Field(0.1, gt=0, le=1, description="backbone learning rate = lr x this, after unfreezing")
    freeze_epochs: int = Field(0, ge=0, description="epochs with the pretrained backbone frozen before unfreezing")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    patience: int = Field(3, ge=1, description="early stopping: epochs without a better validation AP")
    seed: int = Field(0, description="random seed for splits, shuffling and initialisation")
    split: tuple[float, float, float] = Field((0.7, 0.2, 0.1), description="train/val/test fractions of labelled clips")
    frames_per_clip: int = Field(16, ge=0, description="cap on training frames per labelled clip, taken as runs of 8 consecutive frames spread over the clip (0: all); validation and test use every frame")
    modality_dropout: float = Field(0.0, ge=0, le=0.45, description="temporal models (model.context > 0): chance that a training segment hides its audio from the fused head (and the same chance its frames); 0 by default: it teaches the fused head to call a highlight from one branch, the opposite of the veto model.combine = 'agree' gives")
    aux_weight: float = Field(0.3, ge=0, le=2, description="temporal models (model.context > 0): weight of each branch's own auxiliary loss beside the fused loss")
    branch_loss: Literal["and", "each"] = Field("and", description="temporal fused models: what the branch heads learn from a 'normal' frame. 'and': mostly that not both branches fire (a loss on the product of their probabilities, so a face reaction with a calm voice teaches the audio branch, not the frame branch, and a shout with a calm face the frame branch), plus a fifth of each branch's own loss, and (model.combine = 'agree') the fused head's loss does not reach the branches' features; 'each': that each branch is low (the earlier loss; a 'normal' answer on a face-only reaction taught the frame branch that reactions are normal). A highlight frame teaches both branches it is one either way")
    threshold: float = Field(0.5, gt=0, lt=1, description="decision threshold for precision/recall/F1 in metrics")
    promote_margin: float = Field(0.02, ge=0, le=1, description="non-inferiority margin: the new model replaces the current one unless its validation frame AP (or reel precision) is lower by more than this; a tie promotes")
    promote_loss_margin: float = Field(0.25, ge=0, description="...or its validation frame log loss is higher than the current one's by more than this fraction of it")
    promote_noise_z: float = Field(1.645, ge=0, le=5, description="the frame-AP margin widens to this many standard errors of the new-minus-current AP difference, bootstrapped over the shared validation clips (small validation sets are noisy; 0: the fixed margin only)")
    warm_start: bool = Field(True, description="start the new model from the current model's weights when their shapes match")
    warm_epochs: int = Field(3, ge=1, le=500, description="most passes over the training clips for a warm-started model (it starts near a solution; keeps retraining cheap as labels grow)")
    warm_lr_factor: float = Field(0.1, gt=0, le=1, description="a warm-started model fine-tunes at train.lr x this (at the full rate its first pass undid much of what the current model knew)")
    pseudo_labels: bool = Field(False, description="add the current model's confident pseudo-labels on processed VOD time nobody labelled (off by default: see the README's measurements)")
    pseudo_weight: float = Field(0.3, ge=0, le=1, description="loss weight of one pseudo-labelled frame relative to a human-labelled one")
    pseudo_ratio: float = Field(0.5, ge=0, le=0.5, description="total weight of pseudo-labels at most this fraction of the human labels' total weight")
    pseudo_precision: float = Field(0.95, ge=0.5, lt=1, description="thresholds are chosen on validation frames so that pseudo-labels of each class are at least this precise")
    pseudo_confidence: float = Field(0.9, ge=0.5, lt=1, description="and never looser than: teacher probability at least this (or at most 1 - this)")
    pseudo_max: int = Field(2000, ge=0, description="most pseudo-labelled frames per training")


class PretrainConfig(Section):
    """Self-supervised pretraining on the deployment's own VODs (used with model.pretrained = 'self')."""

    blocks_per_vod: int = Field(24, ge=1, le=10000, description="blocks of moments taken from each VOD, spread evenly over it")
    block_seconds: float = Field(8.0, ge=4.0, le=60.0, description="seconds per block (a multiple of 4: the feature cache's grid)")
    max_vods: int = Field(50, ge=1, description="most VODs read (labelled ones first)")
    max_samples: int = Field(3000, ge=16, description="most moments in all (evenly thinned beyond)")
    epochs: int = Field(6, ge=1, le=200, description="passes over the moments")
    batch_size: int = Field(32, ge=2, le=1024, description="moments per batch, at most one per block (the others in the batch are the negatives)")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    temperature: float = Field(0.1, gt=0, le=1, description="softmax temperature of the contrastive loss")
    seed: int = Field(0, description="random seed of the batches, augmentation and initialisation")


class SelectionConfig(Section):
    """From per-frame scores to reel segments."""

    smooth: float = Field(2.0, ge=0, description="seconds of the moving-average window over scores")
    threshold: float = Field(0.6, gt=0, lt=1, description="a segment starts when the smoothed score crosses this")
    low_threshold: float = Field(0.4, gt=0, lt=1, description="...and goes on while it stays above this (hysteresis)")
    percentile: float | None = Field(None, gt=0, lt=100, description="optionally also require scores above this percentile of the VOD")
    pad_before: float = Field(2.0, ge=0, description="seconds added before a segment")
    pad_after: float = Field(2.0, ge=0, description="seconds added after a segment")
    merge_gap: float = Field(3.0, ge=0, description="detected moments closer than this (before padding) are merged; padded segments that overlap always are")
    min_length: float = Field(3.0, ge=0, description="shortest segment kept, in seconds")
    max_length: float = Field(60.0, gt=0, description="longest segment, in seconds (longer ones are trimmed around their peak)")
    max_total: float = Field(600.0, gt=0, description="reel budget in seconds (best segments kept)")
    max_count: int = Field(30, ge=1, description="most segments in a reel")
    min_spacing: float = Field(0.0, ge=0, description="least time between two picked segments")
    snap: float = Field(1.5, ge=0, description="cut boundaries move to the quietest moment within this many seconds")

    @model_validator(mode="after")
    def _hysteresis_order(self) -> SelectionConfig:
        if self.low_threshold > self.threshold:
            raise ValueError(f"low_threshold {self.low_threshold} must not exceed threshold {self.threshold}")
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} must not exceed max_length {self.max_length}")
        return self


class RenderConfig(Section):
    """How reels are cut, labelled and encoded."""

    overlay: str = Field("{vod} {timestamp}  score {score:.2f}", description="text drawn on each clip; fields: {vod} {timestamp} (HH:MM:SS in the VOD) {start} {end} {score} {index}, {clock} (running VOD time); empty: no text")
    font: str = Field("", description="TTF font file for overlays (empty: DejaVu Sans if installed, else ffmpeg's default)")
    font_size: int = Field(28, ge=6, le=200, description="overlay text size in pixels for a 720-pixel-high reel (scaled with the height)")
    fade: float = Field(0.15, ge=0, le=2, description="audio fade in/out at each cut, in seconds")
    height: int = Field(720, ge=0, description="reel height in pixels, never above the source's (0: keep the source's)")
    video_codec: str = Field("libx264", description="ffmpeg video encoder for reels")
    preset: str = Field("veryfast", description="encoder speed preset (faster: bigger files)")
    crf: int = Field(23, ge=0, le=51, description="encoder quality (lower: better and bigger)")
    audio_bitrate: str = Field("128k", description="AAC bitrate of reels")
    clips: bool = Field(False, description="also write each segment as its own file")
    exports: list[Literal["edl", "fcpxml", "xml", "otio"]] = Field(
        default_factory=lambda: ["edl", "fcpxml", "otio"],
        description="editor timelines written beside the reel as NAME.edl (CMX 3600), NAME.fcpxml (Final Cut Pro X, Resolve), NAME.xml (FCP 7 XML: Premiere, Resolve), NAME.otio (OpenTimelineIO)",
    )
    loudness: float | Literal["none"] = Field(
        -14.0, description="integrated loudness of reels, clips and shorts in LUFS (true peak at most -1 dBTP); \"none\": keep the source's levels",
    )

    @model_validator(mode="after")
    def _loudness_range(self) -> RenderConfig:
        if self.loudness != "none" and not -70.0 <= self.loudness <= -5.0:
            raise ValueError(f"loudness {self.loudness} is outside -70..-5 LUFS (or \"none\")")
        return self


class ShortsConfig(Section):
    """Vertical shorts of a reel's best segments (NAME.shorts/01.mp4 ..., shorts.json)."""

    count: int = Field(3, ge=0, le=50, description="how many of the reel's best segments become shorts (0: none)")
    size: str = Field("1080x1920", pattern=r"^\d{2,4}x\d{2,4}$", description="WIDTHxHEIGHT of a short in pixels (even numbers)")
    layout: Literal["stacked", "game"] = Field("stacked", description="\"stacked\": the face cam (the VOD's crop box) on top, the game below; \"game\": the game only (also used when a VOD has no crop set)")
    game_box: CropBox | None = Field(None, description="the part of the game kept [x, y, w, h]; unset: the centre of the frame at full height (trimmed to the aspect of the area it fills)")

    @property
    def dimensions(self) -> tuple[int, int]:
        w, h = (int(v) for v in self.size.split("x"))
        return w - w % 2, h - h % 2

    @model_validator(mode="after")
    def _portrait_enough(self) -> ShortsConfig:
        w, h = self.dimensions
        if min(w, h) < 64:
            raise ValueError(f"size {self.size} is too small (at least 64 pixels each way)")
        return self


class ReviewConfig(Section):
    """What is queued for human review."""

    per_vod: int = Field(20, ge=0, description="most review items queued per processed VOD")
    uncertain: int = Field(8, ge=0, description="how many of those are the most uncertain moments outside the reel")
    min_spacing: float = Field(30.0, ge=0, description="least seconds between two queued items of one VOD")
    uncertain_length: float = Field(6.0, gt=0, description="seconds of an uncertain-moment item")
    check_labels: int = Field(10, ge=0, description="after training, queue this many labelled clips the model disagrees with most")
    check_min_loss: float = Field(0.693, ge=0, description="...only those whose loss is above this (0.693: the model's probability is on the wrong side of 0.5)")
    player: str = Field("", description="external player command (empty: mpv, else ffplay)")


class DaemonConfig(Section):
    """The watched-inbox service."""

    polling: bool = Field(False, description="poll the inbox instead of inotify events (network shares deliver no events)")
    rescan: float = Field(60.0, ge=1, description="seconds between full rescans of the inbox")
    stable: float = Field(10.0, ge=0, description="a file is taken once size, mtime and inode stay unchanged this long")
    max_attempts: int = Field(3, ge=1, description="tries before a job is failed")
    backoff: float = Field(60.0, ge=0, description="seconds before the first retry; doubles each attempt")
    timeout_factor: float = Field(2.0, gt=0, description="per-job timeout = factor x VOD duration + timeout_base")
    timeout_base: float = Field(300.0, ge=0, description="seconds added to every job's timeout")
    stop_timeout: float = Field(20.0, gt=0, description="seconds SIGTERM waits for the current job to stop")
    extensions: list[str] = Field(
        default_factory=lambda: [".mp4", ".mkv", ".mov", ".flv", ".webm", ".ts", ".m2ts", ".mts", ".avi", ".m4v"],
        description="file extensions taken from the inbox (other files are left alone)",
    )


class RetrainConfig(Section):
    """Scheduled student-teacher retraining."""

    enabled: bool = Field(True, description="retrain on the schedule and after new labels")
    cron: str = Field("0 4 * * *", description="crontab schedule (minute hour day month weekday)")
    min_new_labels: int = Field(20, ge=1, description="also retrain once this many labels were added (reviewed, imported or by hand) since the last run")
    nice: int = Field(10, ge=0, le=19, description="niceness added to the training process (on top of the daemon's own)")
    threads: int = Field(1, ge=1, description="torch threads of the training process")
    label_check: float = Field(60.0, ge=1, description="seconds between checks for new labels")
    timeout: float = Field(6 * 3600.0, gt=0, description="a training running longer than this many seconds is killed")


class ClusterConfig(Section):
    """Where jobs run: this machine (local) or a Ray cluster (needs the autoclip[ray] extra)."""

    backend: Literal["local", "ray"] = Field("local", description="'local': child processes on this machine; 'ray': score chunks, render clips (and optionally train) on a Ray cluster")
    address: str = Field("auto", description="Ray cluster to join: 'auto' (the cluster `ray start` made on this machine), 'HOST:6379' or 'ray://HOST:10001' (Ray client)")
    chunk: float = Field(600.0, gt=0, description="seconds of VOD per scoring task (one VOD is scored as chunks in parallel)")
    num_cpus: float = Field(1.0, gt=0, description="CPUs a scoring or rendering task reserves on its node")
    num_gpus: float = Field(0.0, ge=0, description="GPUs a task reserves (training too, with train_on_cluster)")
    retries: int = Field(2, ge=0, le=10, description="times Ray reruns a task whose worker or node died")
    audio_from_start: bool = Field(True, description="each chunk decodes its audio (audio only) from the file's start, so stitched scores equal a one-machine run's; false: only from the window margin before the chunk (AAC noise substitution then differs slightly near the chunk's start)")
    train_on_cluster: bool = Field(False, description="run retraining's fit as one Ray task instead of a child of the head")
    connect_timeout: float = Field(60.0, gt=0, description="seconds to wait for the cluster (and for the VOD-access check) before the job fails")


class Config(Section):
    """autoclip's configuration (config.toml)."""

    paths: PathsConfig = Field(default_factory=PathsConfig)
    frames: FramesConfig = Field(default_factory=FramesConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    shorts: ShortsConfig = Field(default_factory=ShortsConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    #: folder of the config file; relative paths resolve against it (not a config key)
    _root: Path = Path(".")

    @property
    def root(self) -> Path:
        return self._root

    def path(self, name: str) -> Path:
        """An absolute path from [paths] (e.g. ``cfg.path('inbox')``)."""
        p = Path(getattr(self.paths, name))
        return p if p.is_absolute() else (self._root / p)

    def vod_folders(self) -> list[Path]:
        """Where a VOD may have moved since it was seen: the done folder (if used), the inbox."""
        done = [] if str(self.paths.done) in ("", ".") else [self.path("done")]
        return [*done, self.path("inbox")]

    def ensure_dirs(self) -> None:
        for name in ("inbox", "reels", "failed", "models", "cache", "jobs"):
            self.path(name).mkdir(parents=True, exist_ok=True)
        if str(self.paths.done) not in ("", "."):
            self.path("done").mkdir(parents=True, exist_ok=True)
        self.path("database").parent.mkdir(parents=True, exist_ok=True)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}' (remove it or check its spelling)")
        else:
            shown = "" if isinstance(value, dict) else f" = {value!r}"
            lines.append(f"{source}: {key}{shown}: {e['msg']}")
    return "\n".join(lines)


def from_dict(data: dict[str, Any], root: Path | str = ".", source: str = "config") -> Config:
    """Validate ``data``; raise ConfigError with one line per problem naming the key path."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None
    cfg._root = Path(root).resolve()
    return cfg


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_NAME)


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file. A missing default ./config.toml gives the defaults."""
    p = config_path(path)
    if not p.exists():
        if path is None and not os.environ.get(ENV_VAR):
            return from_dict({}, root=Path.cwd())
        raise ConfigError(f"config file {p} not found (create one with `autoclip init DIR`)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from None
    return from_dict(data, root=p.resolve().parent, source=str(p))


# ---------------------------------------------------------------------------------------------
# Writing the commented default file and the reference from the models
# ---------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return _toml_value(str(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _sections() -> list[tuple[str, type[Section]]]:
    return [(name, field.annotation) for name, field in Config.model_fields.items()]  # type: ignore[misc]


def default_toml() -> str:
    """The default config.toml with every key and its description as a comment."""
    out = [
        "# autoclip configuration. Every key is optional; the values below are the defaults.",
        "# Paths are relative to this file's folder. Check it with `autoclip config check`.",
        "",
    ]
    for name, model in _sections():
        out.append(f"[{name}]")
        if model.__doc__:
            out.append(f"# {model.__doc__.strip().splitlines()[0]}")
        inst = model()
        for key, field in model.model_fields.items():
            if field.description:
                out.append(f"# {field.description}")
            value = getattr(inst, key)
            if value is None:
                out.append(f"# {key} = ...  (unset)")
            elif isinstance(value, dict):
                if key == "profiles":
                    out.append("# [frames.profiles.mygame]")
                    out.append('# match = "mygame-*"')
                    out.append("# box = [960, 540, 320, 240]")
            else:
                out.append(f"{key} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def reference_markdown() -> str:
    """A Markdown table per section, for the README's configuration reference."""
    out: list[str] = []
    for name, model in _sections():
        out.append(f"#### `[{name}]`")
        if model.__doc__:
            out.append(model.__doc__.strip().splitlines()[0])
        out.append("")
        out.append("| key | default | meaning |")
        out.append("|---|---|---|")
        inst = model()
        for key, field in model.model_fields.items():
            value = getattr(inst, key)
            shown = "unset" if value is None else ("{}" if isinstance(value, dict) else _toml_value(value))
            desc = (field.description or "").replace("|", "\\|")
            out.append(f"| `{key}` | `{shown}` | {desc} |")
        out.append("")
    return "\n".join(out)


START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def readme_with_reference(readme: str) -> str:
    """``readme`` with the generated reference between its config-reference markers."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{reference_markdown()}\n{END}{tail}"


if __name__ == "__main__":  # python -m autoclip.config: regenerate config.toml and the README reference
    repo = Path(__file__).resolve().parent.parent
    (repo / DEFAULT_NAME).write_text(default_toml(), encoding="utf-8")
    readme = repo / "README.md"
    readme.write_text(readme_with_reference(readme.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {repo / DEFAULT_NAME} and the reference in {readme}")
