"""ffmpeg-python graph builders compiled to argument lists (pure: no ffmpeg is started)."""

from __future__ import annotations

from autoclip import config, graphs, loudness, render, shorts
from autoclip.selection import Segment

SEG = Segment(10.0, 18.0, 0.9, 12.0)


def settings(has_audio: bool = True) -> render.ClipSettings:
    return render.clip_settings(config.RenderConfig(), src_fps=30, src_height=1080, has_audio=has_audio)


def graph_of(args: list[str]) -> str:
    return args[args.index("-filter_complex") + 1]


def test_clip_graph_with_loudness_gain_and_limiter():
    args = graphs.compile_args(graphs.clip_graph("/v/a b.mp4", SEG, "/o/c.mp4", settings(), 8.0, None,
                                                 graphs.Gain(6.5, ceiling=-1.5, limit=True)))
    assert args[:1] == ["ffmpeg"] and args[-1] == "-y"
    i = args.index("-i")
    assert args[i - 4:i + 2] == ["-protocol_whitelist", "file", "-ss", "10.000", "-i", "file:/v/a b.mp4"]
    g = graph_of(args)
    # gain, then a limiter at -1.5 dBFS on 4x oversampled audio, back to 48 kHz, then the fades
    assert "[0:a:0]aresample=48000" in g and "volume=6.50dB" in g
    assert "aresample=192000" in g and "alimiter=attack=1:latency=1:level=0:limit=0.8414:release=50" in g
    assert g.index("volume=") < g.index("alimiter") < g.index("afade=d=0.150:st=0:t=in")
    assert "drawtext" not in g and "scale=-2:720" in g and "fps=30" in g
    assert args[args.index("-t") + 1] == "8.000000" and args[args.index("-c:v") + 1] == "libx264"
    assert args[args.index("-map") + 1].startswith("[s") and args.count("-map") == 2


def test_clip_graph_without_gain_or_audio():
    plain = graph_of(graphs.compile_args(graphs.clip_graph("/v/x.mp4", SEG, "/o/c.mp4", settings(), 8.0)))
    assert "volume" not in plain and "alimiter" not in plain
    no_audio = graphs.compile_args(graphs.clip_graph("/v/x.mp4", SEG, "/o/c.mp4", settings(False), 8.0, None,
                                                     graphs.Gain(3.0)))
    assert "anullsrc=channel_layout=stereo:sample_rate=48000" in no_audio  # silence, never gained
    assert "volume" not in graph_of(no_audio) and "[1]aresample" in graph_of(no_audio)


def test_hostile_paths_are_escaped_by_ffmpeg_python():
    args = graphs.compile_args(graphs.clip_graph("/v/x.mp4", SEG, "/o/c.mp4", settings(), 8.0, "/t/it's: [x],y;z.txt"))
    assert "textfile=/t/it\\\\\\'s\\\\: \\[x\\]\\,y\\;z.txt" in graph_of(args)
    odd = "/v/bad\udcff name.mp4"  # undecodable byte of a non-UTF-8 name survives the graph library
    assert f"file:{odd}" in graphs.compile_args(graphs.clip_graph(odd, SEG, "/o/c.mp4", settings(), 8.0))


def test_stacked_short_graph_crops_face_and_game():
    lay = graphs.ShortLayout(1080, 1920, game=(420, 0, 540, 720), face=(960, 540, 320, 180), face_height=608)
    st = settings()
    args = graphs.compile_args(graphs.short_graph("/v/x.mp4", SEG, "/o/01.mp4", st, 8.0, lay, 42, "/t/o.txt"))
    g = graph_of(args)
    assert "[0:v:0]fps=30" in g and "split" in g
    assert "crop=320:180:960:540" in g and "scale=1080:608" in g
    assert "crop=540:720:420:0" in g and "scale=1080:1312" in g
    assert "vstack=inputs=2" in g and "y=629" in g  # overlay text at the top of the game part
    assert args[args.index("-movflags") + 1] == "+faststart"
    game = graph_of(graphs.compile_args(graphs.short_graph(
        "/v/x.mp4", SEG, "/o/01.mp4", st, 8.0, graphs.ShortLayout(1080, 1920, game=(656, 0, 608, 1080)), 42)))
    assert "vstack" not in game and "split" not in game and "crop=608:1080:656:0,scale=1080:1920" not in game
    assert "crop=608:1080:656:0" in game and "scale=1080:1920" in game


def test_concat_measure_and_frame_graphs():
    cat = graphs.compile_args(graphs.concat_graph("/w/list.ffconcat", "/o/r.mp4", "/w/ch.ffmeta"))
    assert cat[cat.index("-i") + 1] == "file:/w/list.ffconcat" and "file:/w/ch.ffmeta" in cat
    assert ["-map", "0:v", "-map", "0:a", "-map", "1:d?"] == cat[cat.index("-map"):cat.index("-map") + 6]
    assert cat[cat.index("-c") + 1] == "copy" and cat[cat.index("-map_chapters") + 1] == "1"
    meas = loudness.measure_command("/v/x.mp4", 12.0, 8.0)
    assert "-vn" in meas and "[0:a:0]" in graph_of(meas) and "ebur128=framelog=verbose:peak=true" in graph_of(meas)
    assert meas[meas.index("-loglevel") + 1] == "info" and meas[meas.index("-f", meas.index("-map")) + 1] == "null"
    shot = graphs.compile_args(graphs.frame_graph("/o/01.mp4", 2.5, "/o/01.jpg"))
    assert shot[shot.index("-ss") + 1] == "2.500" and shot[shot.index("-vframes") + 1] == "1"


def test_gain_for_targets_and_limits():
    assert loudness.gain_for(loudness.Loudness(-30.0, -12.0), -14.0) == graphs.Gain(16.0, -2.0, True)
    assert loudness.gain_for(loudness.Loudness(-8.0, -0.3), -14.0) == graphs.Gain(-6.0, -2.0, False)
    assert loudness.gain_for(loudness.Loudness(float("-inf"), float("-inf")), -14.0) == graphs.Gain(0.0, limit=False)
    assert loudness.gain_for(loudness.Loudness(-59.0, -40.0), -14.0).db == loudness.MAX_GAIN


def test_parse_ebur128_summary():
    text = ("[Parsed_ebur128_2 @ 0x1] Summary:\n\n  Integrated loudness:\n    I:         -23.4 LUFS\n"
            "    Threshold: -33.6 LUFS\n\n  Loudness range:\n    LRA:         2.1 LU\n\n"
            "  True peak:\n    Peak:        -3.2 dBFS\n")
    assert loudness.parse_summary(text) == loudness.Loudness(-23.4, -3.2)


def test_short_layouts():
    face = (960, 540, 320, 240)  # a 4:3 face cam in a 1280x720 frame
    cfg = config.ShortsConfig()
    lay = shorts.layout_for(cfg, face, (1280, 720))
    assert (lay.width, lay.height, lay.face_height) == (1080, 1920, 768)  # capped at 40 % of the height
    fx, fy, fw, fh = lay.face
    assert abs(fw / fh - 1080 / 768) < 0.02 and fx >= 960 and fy >= 540 and fx + fw <= 1280
    gx, gy, gw, gh = lay.game
    assert gh == 720 and abs(gw / gh - 1080 / (1920 - 768)) < 0.01 and abs(gx + gw / 2 - 640) <= 1
    game = shorts.layout_for(config.ShortsConfig(layout="game"), face, (1280, 720))
    assert game.face is None and game.game == (438, 0, 404, 720)  # centre at 9:16
    boxed = shorts.layout_for(config.ShortsConfig(game_box=(0, 0, 640, 720), size="720x1280"), None, (1280, 720))
    assert boxed.face is None and boxed.game == (118, 0, 404, 720)  # trimmed around its own centre
    assert shorts.pick([Segment(0, 1, 0.5, 0), Segment(5, 6, 0.9, 5), Segment(9, 10, 0.5, 9)], 2) == [
        (2, Segment(5, 6, 0.9, 5)), (1, Segment(0, 1, 0.5, 0))]
