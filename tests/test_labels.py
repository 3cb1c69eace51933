"""Labels: storage rules, CSV import/export, stats warnings and the `label` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from autoclip import cli, fsutil, labels, store, synth
from autoclip.errors import LabelError


@pytest.fixture(scope="module")
def vod_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short real VODs (different content) under <tmp>/vods/."""
    root = tmp_path_factory.mktemp("labels")
    for name, seed in (("a.mp4", 1), ("b.mp4", 2)):
        synth.make_vod(root / "vods" / name, 8.0, [], seed=seed, words=False)
    return root / "vods"


@pytest.fixture()
def conn(tmp_path: Path):
    c = store.connect(tmp_path / "db.sqlite")
    yield c
    c.close()


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_resolves_relative_paths_reads_clock_times_and_reimport_adds_nothing(vod_dir: Path, conn) -> None:
    csv_path = write_csv(vod_dir.parent / "labels.csv", [
        "vod,start,end,label",
        "vods/a.mp4,00:00:01.500,00:00:03,highlight",
        "vods/a.mp4,4,6.25,normal",
        f"{vod_dir / 'b.mp4'},0:02,0:05,Normal",
    ])
    result = labels.import_csv(conn, csv_path)
    assert result == {"file": str(csv_path.resolve()), "rows": 3, "added": 3, "existing": 0}
    rows = labels.list_labels(conn)
    assert [(Path(r["vod"]).name, r["start"], r["end"], r["label"], r["source"]) for r in rows] == [
        ("a.mp4", 1.5, 3.0, "highlight", "import"),
        ("a.mp4", 4.0, 6.25, "normal", "import"),
        ("b.mp4", 2.0, 5.0, "normal", "import"),
    ]
    assert all(Path(r["vod"]).is_absolute() for r in rows)
    assert rows[0]["fingerprint"] == fsutil.fingerprint(vod_dir / "a.mp4")
    again = labels.import_csv(conn, csv_path)
    assert (again["added"], again["existing"]) == (0, 3)
    assert len(labels.list_labels(conn)) == 3


def test_import_reports_every_bad_row_by_line_and_imports_nothing(vod_dir: Path, conn) -> None:
    csv_path = write_csv(vod_dir / "bad.csv", [
        "vod,start,end,label",          # line 1
        "a.mp4,1,2,highlight",          # 2 good
        "a.mp4,5,4,normal",             # 3 end before start
        "",                             # 4 blank: skipped
        "missing.mp4,1,2,normal",       # 5 no such file
        "b.mp4,00:00:xx,3,normal",      # 6 bad time
        "b.mp4,3,4,funny",              # 7 bad label
        "b.mp4,3",                      # 8 too few fields
        "b.mp4,6,7,normal",             # 9 good
    ])
    with pytest.raises(labels.LabelImportError) as info:
        labels.import_csv(conn, csv_path)
    err = info.value
    assert [line for line, _ in err.problems] == [3, 5, 6, 7, 8]
    reasons = dict(err.problems)
    assert "end" in reasons[3] and "missing" in reasons[5] and "xx" in reasons[6] and "funny" in reasons[7]
    assert "\n" not in str(err) and "line 3" in str(err) and "nothing imported" in str(err)
    assert labels.list_labels(conn) == []


def test_import_rejects_wrong_header(vod_dir: Path, conn) -> None:
    csv_path = write_csv(vod_dir / "header.csv", ["video,from,to,label", "a.mp4,1,2,highlight"])
    with pytest.raises(LabelError, match="header"):
        labels.import_csv(conn, csv_path)


def test_contradicting_overlaps_are_rejected_with_an_explanation(vod_dir: Path, conn) -> None:
    a, b = vod_dir / "a.mp4", vod_dir / "b.mp4"
    first = labels.add_label(conn, a, 1.0, 3.0, "highlight", "cli")
    assert labels.add_label(conn, str(a), "1", "0:03", "highlight", "review") == first  # exact duplicate
    with pytest.raises(LabelError, match=rf"overlaps label #{first} highlight") as info:
        labels.add_label(conn, a, 2.5, 4.0, "normal", "cli")
    assert "label delete" in str(info.value)
    labels.add_label(conn, a, 3.0, 5.0, "normal", "cli")      # touching is not a contradiction
    labels.add_label(conn, b, 1.0, 3.0, "normal", "cli")      # another VOD
    labels.add_label(conn, a, 2.0, 2.5, "highlight", "cli")   # same class may overlap (stats warns)
    assert len(labels.list_labels(conn)) == 4

    in_file = write_csv(vod_dir / "contra.csv", [
        "vod,start,end,label",
        "b.mp4,5,7,highlight",
        "b.mp4,6,7.5,normal",   # contradicts line 2
        "a.mp4,0.5,1.5,normal",  # contradicts stored label #first
    ])
    with pytest.raises(labels.LabelImportError) as info:
        labels.import_csv(conn, in_file)
    problems = dict(info.value.problems)
    assert sorted(problems) == [3, 4]
    assert "line 2" in problems[3] and f"#{first}" in problems[4]
    assert len(labels.list_labels(conn)) == 4


def test_add_label_needs_the_file_unless_the_fingerprint_is_known(vod_dir: Path, conn) -> None:
    gone = vod_dir / "gone.mp4"
    with pytest.raises(LabelError, match="missing"):
        labels.add_label(conn, gone, 1, 2, "highlight", "cli")
    label_id = labels.add_label(conn, gone, 1, 2, "highlight", "review", fingerprint="abc-123")
    assert labels.get_label(conn, label_id)["fingerprint"] == "abc-123"
    for bad in ((3, 2, "normal", "cli"), (1, 2, "meh", "cli"), (1, 2, "normal", "web")):
        with pytest.raises(LabelError):
            labels.add_label(conn, vod_dir / "a.mp4", *bad)
    assert labels.delete_label(conn, label_id) is True
    assert labels.delete_label(conn, label_id) is False


def test_export_round_trips_through_import(vod_dir: Path, conn, tmp_path: Path) -> None:
    labels.add_label(conn, vod_dir / "a.mp4", 1.25, 3.5, "highlight", "cli")
    labels.add_label(conn, vod_dir / "b.mp4", "0:00:04.125", 6, "normal", "cli")
    out = tmp_path / "export" / "labels.csv"
    assert labels.export_csv(conn, out) == 2
    assert out.read_text().splitlines()[0] == "vod,start,end,label"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(fsutil.TMP_PREFIX)]
    assert labels.import_csv(conn, out)["added"] == 0
    other = store.connect(tmp_path / "other.sqlite")
    assert labels.import_csv(other, out)["added"] == 2
    key = ("vod", "fingerprint", "start", "end", "label")
    assert [[r[k] for k in key] for r in labels.list_labels(other)] == [[r[k] for k in key] for r in labels.list_labels(conn)]


def test_stats_counts_and_warnings(vod_dir: Path, conn, tmp_path: Path) -> None:
    assert "no labels yet" in labels.stats(conn)["warnings"][0]
    copy = tmp_path / "copy.mp4"
    shutil.copy(vod_dir / "a.mp4", copy)
    a = vod_dir / "a.mp4"
    labels.add_label(conn, a, 0.5, 1.5, "highlight", "cli")
    for i in range(6):
        labels.add_label(conn, vod_dir / "b.mp4", i, i + 0.75, "normal", "cli")
    labels.add_label(conn, a, 2.0, 4.0, "normal", "cli")
    labels.add_label(conn, a, 3.0, 5.0, "normal", "cli")  # overlaps the one before
    copy_fp = fsutil.fingerprint(copy)
    copy.unlink()
    labels.add_label(conn, copy, 6.0, 7.0, "normal", "cli", fingerprint=copy_fp + "x")
    st = labels.stats(conn)
    assert st["labels"] == 10
    assert st["per_label"] == {"highlight": {"count": 1, "seconds": 1.0}, "normal": {"count": 9, "seconds": 9.5}}
    assert st["total_seconds"] == 10.5
    per_vod = {Path(v["vod"]).name: (v["highlight"], v["normal"], v["exists"]) for v in st["vods"]}
    assert per_vod == {"a.mp4": (1, 2, "ok"), "b.mp4": (0, 6, "ok"), "copy.mp4": (0, 1, "missing")}
    text = " | ".join(st["warnings"])
    assert "class imbalance: 1 highlight vs 9 normal" in text
    assert "VOD file missing" in text and "copy.mp4" in text
    assert "overlapping normal labels" in text
    json.dumps(st)  # JSON-ready


def run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    cfg = tmp_path / "config.toml"
    if not cfg.exists():
        cfg.write_text('[paths]\ndatabase = "db/autoclip.db"\n')
    capsys.readouterr()
    rc = cli.main(["--config", str(cfg), "-q", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_label_commands(vod_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_csv(tmp_path / "good.csv", ["vod,start,end,label", f"{vod_dir / 'a.mp4'},1,2,highlight"])
    rc, out, _ = run_cli(tmp_path, capsys, "label", "import", str(good))
    assert rc == 0 and "imported 1 new label" in out
    rc, out, _ = run_cli(tmp_path, capsys, "label", "add", str(vod_dir / "b.mp4"), "00:00:02", "4.5", "normal", "--json")
    assert rc == 0 and json.loads(out)["end"] == 4.5
    rc, out, _ = run_cli(tmp_path, capsys, "label", "list", "--json")
    listed = json.loads(out)
    assert rc == 0 and [(r["label"], r["source"]) for r in listed] == [("highlight", "import"), ("normal", "cli")]
    assert {"id", "vod", "fingerprint", "start", "end", "label", "source", "created"} <= set(listed[0])
    rc, out, _ = run_cli(tmp_path, capsys, "label", "stats", "--json")
    assert rc == 0 and json.loads(out)["labels"] == 2
    rc, out, _ = run_cli(tmp_path, capsys, "label", "stats")
    assert rc == 0 and "warning: only 2 VOD(s)" in out
    rc, _, _ = run_cli(tmp_path, capsys, "label", "export", str(tmp_path / "out.csv"))
    assert rc == 0 and len((tmp_path / "out.csv").read_text().splitlines()) == 3

    bad = write_csv(tmp_path / "bad.csv", ["vod,start,end,label", "nope.mp4,1,2,highlight", "nope.mp4,3,2,normal"])
    rc, _, err = run_cli(tmp_path, capsys, "label", "import", str(bad))
    assert rc == 1
    assert f"{bad}:2:" in err and f"{bad}:3:" in err and "autoclip: error:" in err
    rc, _, err = run_cli(tmp_path, capsys, "label", "add", str(vod_dir / "a.mp4"), "1.5", "3", "normal")
    assert rc == 1 and "overlaps" in err
    rc, out, _ = run_cli(tmp_path, capsys, "label", "delete", str(listed[0]["id"]))
    assert rc == 0 and "deleted" in out
