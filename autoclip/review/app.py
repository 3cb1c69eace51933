"""`autoclip review`: answer the review queue with single keys, in an 80x24 terminal over SSH.

Left, the pending items by priority; right, the selected item: why it was asked, a filmstrip of
its frames, the score curve around it with the item's range marked, and the loudness. Each
answer is written to the database at once (one transaction with its label) and the list moves
on. Frame decoding runs in a worker thread that reports back with ``call_from_thread``.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from autoclip import store
from autoclip.errors import AutoclipError
from autoclip.fsutil import locate
from autoclip.review import preview, queue
from autoclip.timefmt import hms

log = logging.getLogger(__name__)

NUDGE = 1.0
STRIP_ROWS = 7
STRIP_FRAMES = 4

WHY = {
    "in-reel": "in the reel: really a highlight? (false positive?)",
    "uncertain": "the model was unsure here (score near threshold)",
    "check-label": "a label the model disagrees with: is it right?",
}

HELP = f"""[b]autoclip review[/b]: answer with single keys; each answer is saved at once.

  [b]h[/b]  highlight                 [b]n[/b]  normal (not a highlight)
  [b]s[/b]  skip (no label)           [b]u[/b]  undo the last answer (again: more)
  [b]p[/b]  play the clip in mpv or ffplay (review.player in config.toml)
  [b]\\[[/b] [b]][/b]  move the start {NUDGE:g} s earlier / later
  [b]{{[/b] [b]}}[/b]  move the end {NUDGE:g} s earlier / later
  [b]j[/b] / [b]down[/b]  next item         [b]k[/b] / [b]up[/b]  previous item
  [b]?[/b]  this help                 [b]q[/b]  quit (nothing is lost)

score: the model's score around the item; its range is marked below.
loud: loudness from -60 to 0 dBFS.          Press any key to close."""


class HelpScreen(ModalScreen[None]):
    """The key list; any key closes it."""

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")

    def on_key(self, event: Any) -> None:
        event.stop()
        self.dismiss()


class ReviewApp(App[None]):
    """The review queue as a Textual app."""

    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = False
    TITLE = "autoclip review"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "answer('highlight')", "Highlight"),
        Binding("n", "answer('normal')", "Normal"),
        Binding("s", "answer('skip')", "Skip"),
        Binding("u", "undo", "Undo"),
        Binding("p", "play", "Play"),
        Binding("left_square_bracket", "nudge('start', -1)", "Start-", show=False),
        Binding("right_square_bracket", "nudge('start', 1)", "Start+", show=False),
        Binding("left_curly_bracket", "nudge('end', -1)", "End-", show=False),
        Binding("right_curly_bracket", "nudge('end', 1)", "End+", show=False),
        Binding("j", "move(1)", "Next", show=False),
        Binding("k", "move(-1)", "Previous", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, cfg: Any, conn: sqlite3.Connection | None = None, *, frames: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self._own_conn = conn is None
        self.conn = conn if conn is not None else store.connect(cfg.path("database"))
        self.show_frames = frames
        self.items: list[dict[str, Any]] = []
        self._tracks: dict[str, preview.ScoreTrack | None] = {}
        self._vods: dict[tuple[str, str], Path | None] = {}
        self._players: list[subprocess.Popen[bytes]] = []

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="progress")
        with Horizontal(id="body"):
            yield OptionList(id="items")
            with Vertical(id="detail"):
                yield Static(id="info")
                yield Static(id="strip")
                yield Static(id="curve")
        yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_items()
        self.query_one("#items", OptionList).focus()

    def on_unmount(self) -> None:
        if self._own_conn:
            self.conn.close()

    # -- data --------------------------------------------------------------------------------

    @property
    def current(self) -> dict[str, Any] | None:
        idx = self.query_one("#items", OptionList).highlighted
        return self.items[idx] if idx is not None and 0 <= idx < len(self.items) else None

    def refresh_items(self, select_id: int | None = None, index: int | None = None) -> None:
        """Reload pending items; highlight ``select_id``, else position ``index``, else the top."""
        self.items = queue.list_items(self.conn, "pending")
        options = self.query_one("#items", OptionList)
        options.clear_options()
        options.add_options([Option(self._row(it), id=str(it["id"])) for it in self.items])
        target = 0
        if select_id is not None:
            target = next((i for i, it in enumerate(self.items) if it["id"] == select_id), 0)
        elif index is not None:
            target = min(index, len(self.items) - 1)
        options.highlighted = target if self.items else None
        self.update_progress()
        self.show_item()

    @staticmethod
    def _row(item: dict[str, Any]) -> str:
        tag = {"in-reel": "reel", "uncertain": "unsure", "check-label": "check"}[item["reason"]]
        return f"{hms(item['start'], 1, compact=True):>9} {tag:<6} {item['score']:.2f}"

    def update_progress(self) -> None:
        p = queue.progress(self.conn)
        hl, nm = p["labels"]["highlight"], p["labels"]["normal"]
        share = f"{100 * hl / (hl + nm):.0f}% hl" if hl + nm else "no labels"
        self.query_one("#progress", Static).update(
            f" autoclip review │ today {p['answered_today']} │ left {p['pending']} │ "
            f"labels {hl} highlight / {nm} normal ({share})"
        )

    def say(self, message: str) -> None:
        self.query_one("#message", Static).update(message)

    # -- the selected item -------------------------------------------------------------------

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.show_item()

    def show_item(self) -> None:
        item = self.current
        info, strip, curve = (self.query_one(f"#{n}", Static) for n in ("info", "strip", "curve"))
        if item is None:
            info.update("Nothing to review: new items arrive as VODs are processed.\nPress q to quit.")
            strip.update("")
            curve.update("")
            return
        length = item["end"] - item["start"]
        info.update(Text.assemble(
            (f"#{item['id']} {item['reason']}", "bold"), f"  score {item['score']:.2f}\n",
            f"{Path(item['vod']).name}  {hms(item['start'], 1, compact=True)}-{hms(item['end'], 1, compact=True)} ({length:.1f} s)\n",
            (WHY[item["reason"]], "italic"),
        ))
        strip.update("decoding frames..." if self.show_frames else "")
        self._draw_curve(item, self._tracks.get(item["job"] or ""))
        self.load_preview(dict(item))

    def _draw_curve(self, item: dict[str, Any], track: preview.ScoreTrack | None) -> None:
        widget = self.query_one("#curve", Static)
        width = max(10, widget.size.width - 7)
        c = preview.curves(track, item["start"], item["end"], width)
        text = Text()
        text.append("score  ", "bold")
        text.append((c["score"] or "(no scores for this job)") + "\n", "green")
        text.append("       " + c["marker"] + "\n", "yellow")
        text.append("loud   ", "bold")
        text.append((c["loudness"] or "(no loudness)") + "\n", "cyan")
        peak = "" if c["peak_db"] is None else f"  peak {c['peak_db']:.0f} dBFS"
        text.append(f"       {hms(c['t0'], 1, compact=True)} .. {hms(c['t1'], 1, compact=True)}{peak}", "dim")
        widget.update(text)

    def vod_path(self, item: dict[str, Any]) -> Path | None:
        """Where the item's VOD is now (the daemon moves processed VODs to the done folder)."""
        key = (item["vod"], item["fingerprint"])
        if key not in self._vods:
            self._vods[key] = locate(item["vod"], item["fingerprint"], self.cfg.vod_folders())
        return self._vods[key]

    @work(thread=True, exclusive=True, group="preview")
    def load_preview(self, item: dict[str, Any]) -> None:
        """Worker: the job's score track, then a few decoded frames of the item."""
        worker = get_current_worker()
        job = item["job"] or ""
        if job not in self._tracks:
            self._tracks[job] = preview.load_track(self.cfg.path("jobs"), item["job"])
        if not worker.is_cancelled:
            self.call_from_thread(self._preview_ready, item, None, "")
        if not self.show_frames:
            return
        frames, error = [], ""
        vod = self.vod_path(item)
        if vod is None:
            error = f"VOD not found: {item['vod']} (moved or deleted?)"
        else:
            try:
                frames = preview.filmstrip(vod, item["start"], item["end"], count=STRIP_FRAMES,
                                           size=32, media_cfg=self.cfg.media)
            except (AutoclipError, OSError, ImportError) as err:
                error = f"no frames: {err}"
        if not worker.is_cancelled:
            self.call_from_thread(self._preview_ready, item, frames, error)

    def _preview_ready(self, item: dict[str, Any], frames: list[Any] | None, error: str) -> None:
        cur = self.current
        if cur is None or (cur["id"], cur["start"], cur["end"]) != (item["id"], item["start"], item["end"]):
            return
        if frames is None:
            self._draw_curve(cur, self._tracks.get(cur["job"] or ""))
            return
        strip = self.query_one("#strip", Static)
        strip.update(Text(error, "red") if error else preview.strip_text(frames, strip.size.width or 50, STRIP_ROWS))

    # -- actions -----------------------------------------------------------------------------

    def action_answer(self, label: str) -> None:
        item = self.current
        if item is None:
            self.say("nothing to answer")
            return
        index = self.query_one("#items", OptionList).highlighted or 0
        try:
            queue.mark(self.conn, item["id"], label)
        except AutoclipError as err:
            self.say(f"[red]{err}[/red]")
            return
        self.say(f"#{item['id']} saved as {label}")
        self.refresh_items(index=index)

    def action_undo(self) -> None:
        undone = queue.undo(self.conn, 1)
        if not undone:
            self.say("nothing to undo")
            return
        self.say(f"undone: #{undone[0]['id']} is pending again")
        self.refresh_items(select_id=undone[0]["id"])

    def action_nudge(self, edge: str, direction: int) -> None:
        item = self.current
        if item is None:
            return
        value = item[edge] + direction * NUDGE
        try:
            queue.adjust(self.conn, item["id"], **{edge: value})
        except AutoclipError as err:
            self.say(f"[red]{err}[/red]")
            return
        self.refresh_items(select_id=item["id"])

    def action_move(self, step: int) -> None:
        options = self.query_one("#items", OptionList)
        if step > 0:
            options.action_cursor_down()
        else:
            options.action_cursor_up()

    def action_play(self) -> None:
        item = self.current
        if item is None:
            return
        self._players = [p for p in self._players if p.poll() is None]
        vod = self.vod_path(item)
        if vod is None:
            self.say(f"[red]VOD not found: {item['vod']} (moved or deleted?)[/red]")
            return
        argv = preview.player_command(self.cfg.review.player, str(vod), item["start"], item["end"])
        if argv is None:
            self.say("[red]no player found: install mpv or ffplay, or set review.player in config.toml[/red]")
            return
        try:
            self._players.append(subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            ))
        except OSError as err:
            self.say(f"[red]could not start {argv[0]}: {err}[/red]")
            return
        self.say(f"playing #{item['id']} in {Path(argv[0]).name}")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


def run(cfg: Any, *, frames: bool = True) -> None:
    """Open the review UI on the configured database."""
    ReviewApp(cfg, frames=frames).run()
