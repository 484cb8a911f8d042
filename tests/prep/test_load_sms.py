"""End-to-end SMS/URMP assembly (training/load_sms.py) on a synthetic mini-SMS.

A fake raw-dataset tree with a few tiny generated videos, and a fake public bucket (files.txt,
metadata, a mask file) served from a loopback HTTP server.
"""

from __future__ import annotations

import csv
import functools
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from saganet.errors import UserInputError
from saganet.prep.sms_metadata import (
    SmsRow,
    UrmpRow,
    VideoIndex,
    plan_sms_jobs,
    plan_urmp_jobs,
    read_sms_metadata,
    read_urmp_metadata,
)
from tests.prep.test_clip_cut import frame_value, probe, write_test_video
from training.load_sms import build_parser, main

REPO = Path(__file__).resolve().parents[2]

SMS_HEADER = ["", "subset", "YTID", "filename", "redefined_label", "start_msec", "end_msec",
              "split"]
SMS_ROWS = [
    # solos raw video -> cut
    ["0", "solos", "soloA", "soloA_500_2500", "violin", "500", "2500", "train"],
    # music21: raw video absent, already-cut clip present -> copy
    ["1", "music21", "m21raw", "m21clip_0_2000", "cello", "0", "2000", "val"],
    # avs-semantic: nothing there -> missing
    ["2", "avs-semantic", "avsGone", "avsGone_0_2000", "flute", "0", "2000", "train"],
    # unknown subset -> missing (reported)
    ["3", "vggsound", "vgg1", "vgg1_0_2000", "piano", "0", "2000", "train"],
    # undecodable raw video -> failed
    ["4", "solos", "broken", "broken_0_1000", "violin", "0", "1000", "train"],
]
URMP_ROWS = [
    # already-cut clip present -> copy
    ["01_Jupiter_vn_vc/Vid_01_Jupiter_vn_vc_0_2000", "0", "2000"],
    # original video present -> cut
    ["02_Sonata_vn_vn/Vid_02_Sonata_vn_vn_500_2500", "500", "2500"],
]
LISTING = ["sms/metadata.csv", "urmp/metadata.tsv", "sms/masks/soloA_500_2500.json",
           "ckpts/saganet.pth", ""]


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests download from a loopback bucket: not offline unless a test says so."""
    for var in ("SAGANET_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def write_table(path: Path, header: list[str], rows: list[list[str]], delimiter: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated videos, made once and copied into each test's raw tree."""
    folder = tmp_path_factory.mktemp("videos")
    broken = folder / "broken.mp4"
    broken.write_bytes(b"not a video" * 20)
    return {
        "solos/videos/violin/soloA.mp4": write_test_video(folder / "soloA.mp4", 3.0),
        "music21/solo/cello/m21clip_0_2000.mp4": write_test_video(folder / "m21.mp4", 2.0),
        "solos/videos/violin/broken.mp4": broken,
        "urmp/01_Jupiter_vn_vc/Vid_01_Jupiter_vn_vc_0_2000.mp4":
            write_test_video(folder / "u1.mp4", 2.0),
        "urmp/02_Sonata_vn_vn/Vid_02_Sonata_vn_vn.mp4": write_test_video(folder / "u2.mp4", 3.0),
    }


@pytest.fixture
def raw(tmp_path: Path, videos: dict[str, Path]) -> Path:
    root = tmp_path / "raw"
    for rel, src in videos.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    (root / "avs").mkdir()
    return root


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[str]:
    """A loopback 'public bucket' with files.txt, the metadata and one mask file."""
    pub = tmp_path / "server" / "pub"
    write_table(pub / "sms" / "metadata.csv", SMS_HEADER, SMS_ROWS, ",")
    write_table(pub / "urmp" / "metadata.tsv", ["video_id", "s_ts", "e_ts"], URMP_ROWS, "\t")
    (pub / "sms" / "masks").mkdir()
    (pub / "sms" / "masks" / "soloA_500_2500.json").write_text('{"counts": []}')
    (pub / "files.txt").write_text("\n".join(LISTING))  # no ckpts/saganet.pth on purpose
    handler = functools.partial(_QuietHandler, directory=str(tmp_path / "server"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pub"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def roots(raw: Path) -> list[str]:
    return ["--solos_root", str(raw / "solos"), "--music21_root", str(raw / "music21"),
            "--avs_root", str(raw / "avs"), "--urmp_root", str(raw / "urmp")]


def table_row(stdout: str, source: str, split: str) -> list[int]:
    """(rows, found, cut, copied, existing, missing, failed) of one table line."""
    for line in stdout.splitlines():
        cells = line.split()
        if cells[:2] == [source, split]:
            return [int(c) for c in cells[2:]]
    raise AssertionError(f"no table row for {source}/{split} in:\n{stdout}")


def missing_rows(out: Path) -> dict[str, list[str]]:
    lines = (out / "missing.tsv").read_text().splitlines()
    assert lines[0] == "source\tsplit\tid\tstatus\treason"
    return {cells[2]: cells for cells in (line.split("\t") for line in lines[1:])}


def test_download_cut_copy_missing_and_resume(
    raw: Path, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    assert main([*roots(raw), "--output_dir", str(out), "--base_url", bucket]) == 0
    stdout = capsys.readouterr().out

    # Published files: everything listed except checkpoints.
    assert (out / "files.txt").exists()
    assert (out / "sms" / "masks" / "soloA_500_2500.json").read_text() == '{"counts": []}'
    assert not (out / "ckpts").exists()

    cut = out / "sms" / "data" / "violin" / "soloA_500_2500.mp4"
    facts = probe(cut)
    assert facts["n_video"] == 1 and facts["n_audio"] == 1
    assert facts["frames"] == 50  # 2.0 s at 25 fps
    assert facts["audio_seconds"] == pytest.approx(2.0, abs=0.05)
    # 0.5 s lies halfway between frames 12 and 13: the clip starts with the one inside it.
    assert facts["first_value"] == pytest.approx(frame_value(13), abs=3)

    copied = out / "sms" / "data" / "cello" / "m21clip_0_2000.mp4"
    assert copied.read_bytes() == (raw / "music21/solo/cello/m21clip_0_2000.mp4").read_bytes()
    assert (raw / "music21/solo/cello/m21clip_0_2000.mp4").exists()  # copied, not moved

    urmp = out / "urmp" / "data"
    assert (urmp / "01_Jupiter_vn_vc" / "Vid_01_Jupiter_vn_vc_0_2000.mp4").exists()
    urmp_cut = urmp / "02_Sonata_vn_vn" / "Vid_02_Sonata_vn_vn_500_2500.mp4"
    assert probe(urmp_cut)["frames"] == 50

    assert table_row(stdout, "solos", "train") == [2, 2, 1, 0, 0, 0, 1]
    assert table_row(stdout, "music21", "val") == [1, 1, 0, 1, 0, 0, 0]
    assert table_row(stdout, "avs-semantic", "train") == [1, 0, 0, 0, 0, 1, 0]
    assert table_row(stdout, "vggsound", "train") == [1, 0, 0, 0, 0, 1, 0]
    assert table_row(stdout, "urmp", "test") == [2, 2, 1, 1, 0, 0, 0]

    missing = missing_rows(out)
    assert set(missing) == {"avsGone_0_2000", "vgg1_0_2000", "broken_0_1000"}
    assert missing["avsGone_0_2000"][:4] == ["avs-semantic", "train", "avsGone_0_2000",
                                             "missing"]
    assert "avsGone.mp4" in missing["avsGone_0_2000"][4]
    assert "unknown subset 'vggsound'" in missing["vgg1_0_2000"][4]
    assert missing["broken_0_1000"][3] == "failed"

    # Rerun: finished clips are left alone, the failed one is tried again.
    stamp = cut.stat().st_mtime_ns
    assert main([*roots(raw), "--output_dir", str(out), "--base_url", bucket]) == 0
    stdout = capsys.readouterr().out
    assert cut.stat().st_mtime_ns == stamp
    assert table_row(stdout, "solos", "train") == [2, 2, 0, 0, 1, 0, 1]
    assert table_row(stdout, "urmp", "test") == [2, 2, 0, 0, 2, 0, 0]

    # --overwrite remakes finished clips.
    assert main([*roots(raw), "--output_dir", str(out), "--offline", "--overwrite"]) == 0
    stdout = capsys.readouterr().out
    assert table_row(stdout, "solos", "train") == [2, 2, 1, 0, 0, 0, 1]
    assert table_row(stdout, "urmp", "test") == [2, 2, 1, 1, 0, 0, 0]


def test_move_mode_and_rerun_after_move(
    raw: Path, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    args = [*roots(raw), "--output_dir", str(out), "--base_url", bucket, "--move_files"]
    assert main(args) == 0
    capsys.readouterr()
    moved = raw / "music21/solo/cello/m21clip_0_2000.mp4"
    assert not moved.exists()
    assert (out / "sms" / "data" / "cello" / "m21clip_0_2000.mp4").exists()
    assert not (raw / "urmp/01_Jupiter_vn_vc/Vid_01_Jupiter_vn_vc_0_2000.mp4").exists()
    assert (raw / "solos/videos/violin/soloA.mp4").exists()  # raw videos are never moved

    # The sources are gone now, but the clips count as finished, not missing.
    assert main([*args, "--offline"]) == 0
    stdout = capsys.readouterr().out
    assert table_row(stdout, "music21", "val") == [1, 1, 0, 0, 1, 0, 0]
    assert table_row(stdout, "urmp", "test") == [2, 2, 0, 0, 2, 0, 0]


def test_sources_without_roots_are_missing(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    assert main(["--output_dir", str(out), "--base_url", bucket]) == 0
    stdout = capsys.readouterr().out
    assert table_row(stdout, "solos", "train") == [2, 0, 0, 0, 0, 2, 0]
    assert table_row(stdout, "urmp", "test") == [2, 0, 0, 0, 0, 2, 0]
    reasons = {cells[4] for cells in missing_rows(out).values()}
    assert "no raw root given for urmp" in reasons
    assert "no raw root given for solos" in reasons


def test_bucket_listing_fallback(raw: Path, tmp_path: Path) -> None:
    """Without a files.txt object, the bucket's own plain-text listing is used."""
    served = tmp_path / "bucket"
    write_table(served / "sms" / "metadata.csv", SMS_HEADER, SMS_ROWS[:1], ",")
    write_table(served / "urmp" / "metadata.tsv", ["video_id", "s_ts", "e_ts"], [], "\t")

    class ListingHandler(_QuietHandler):
        def do_GET(self) -> None:
            if self.path == "/pub":
                body = b"sms/metadata.csv\nurmp/metadata.tsv\nckpts/saganet.pth\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.path = self.path.removeprefix("/pub")
                super().do_GET()

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(ListingHandler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = tmp_path / "data"
        url = f"http://127.0.0.1:{server.server_address[1]}/pub"
        assert main(["--output_dir", str(out), "--base_url", url]) == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (out / "files.txt").read_text().startswith("sms/metadata.csv")
    assert (out / "sms" / "metadata.csv").exists() and (out / "urmp" / "metadata.tsv").exists()


def test_metadata_missing_a_column_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    header = [h for h in SMS_HEADER if h != "end_msec"]
    write_table(out / "sms" / "metadata.csv", header, [], ",")
    write_table(out / "urmp" / "metadata.tsv", ["video_id", "s_ts", "e_ts"], [], "\t")
    assert main(["--output_dir", str(out), "--offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "end_msec" in err and "metadata.csv" in err


@pytest.mark.parametrize(
    "problem", ["bad_root", "no_metadata", "bad_url", "bad_workers"]
)
def test_user_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    out = tmp_path / "data"
    args = {
        "bad_root": ["--solos_root", str(tmp_path / "nope"), "--offline"],
        "no_metadata": ["--offline"],
        # Nothing listens on port 9 of the loopback: the download fails at once.
        "bad_url": ["--base_url", "http://127.0.0.1:9/pub"],
        "bad_workers": ["--workers", "0"],
    }[problem]
    assert main(["--output_dir", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("load_sms.py: ") and err.count("\n") == 1


def test_script_runs_as_a_file_and_explains_every_option() -> None:
    for action in build_parser()._actions:
        assert action.help, f"{action.dest} has no help"
    result = subprocess.run(
        [sys.executable, str(REPO / "training" / "load_sms.py"), "--help"],
        capture_output=True, text=True, check=False, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    for option in ("--music21_root", "--avs_root", "--solos_root", "--urmp_root",
                   "--output_dir", "--move_files", "--base_url", "--offline",
                   "--workers", "--overwrite"):
        assert option in result.stdout
    # The reference script's names, shown next to ours.
    for ours, theirs in (("--solos_root", "--solos"), ("--music21_root", "--music21"),
                         ("--avs_root", "--avssbench"), ("--urmp_root", "--urmp")):
        assert f"{ours} {ours[2:].upper()}, {theirs} {ours[2:].upper()}" in result.stdout


def test_reference_command_line_is_accepted(tmp_path: Path) -> None:
    # The reference README: load_sms.py --solos ... --music21 ... --avssbench ... --urmp ...
    reference = ["--solos", "s", "--music21", "m", "--avssbench", "a", "--urmp", "u"]
    ours = ["--solos_root", "s", "--music21_root", "m", "--avs_root", "a", "--urmp_root", "u"]
    parser = build_parser()
    assert vars(parser.parse_args(reference)) == vars(parser.parse_args(ours))
    assert parser.parse_args(reference).avs_root == Path("a")


def test_offline_lists_every_missing_published_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    write_table(out / "sms" / "metadata.csv", SMS_HEADER, SMS_ROWS, ",")
    (out / "files.txt").write_text("\n".join(LISTING))
    assert main(["--output_dir", str(out), "--offline", "--base_url", "http://x/pub"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("load_sms.py: error: offline mode is on and 2 published file(s)")
    for name in ("urmp/metadata.tsv", "sms/masks/soloA_500_2500.json"):
        assert f"download http://x/pub/{name} to {out / name}" in err
    assert "sms/metadata.csv" not in err and "saganet.pth" not in err


def test_metadata_read_by_column_name(tmp_path: Path) -> None:
    # Columns in another order, other case, no split column, pandas-style float times.
    path = write_table(
        tmp_path / "m.csv",
        ["end_msec", "Subset", "filename", "ytid", "redefined_label", "start_msec", "extra"],
        [["2500.0", "solos", "a_500_2500", "a", "violin", "500.0", "x"]],
        ",",
    )
    (row,) = read_sms_metadata(path)
    assert (row.subset, row.ytid, row.filename, row.label, row.split) == (
        "solos", "a", "a_500_2500", "violin", "all")
    assert row.line == 2
    (job,) = plan_sms_jobs([row], {"solos": None}, tmp_path / "out")
    assert job.action == "missing" and job.reason == "no raw root given for solos"

    urmp = write_table(tmp_path / "u.tsv", ["e_ts", "video_id", "s_ts"],
                       [["2000", "d/Vid_x_0_2000", "0"]], "\t")
    (urow,) = read_urmp_metadata(urmp)
    assert (urow.video_id, urow.start_ms, urow.end_ms) == ("d/Vid_x_0_2000", "0", "2000")

    with pytest.raises(UserInputError, match="lacks column"):
        read_urmp_metadata(write_table(tmp_path / "bad.tsv", ["video_id"], [], "\t"))


def test_index_excludes_output_and_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "deep" / "v1.mp4").write_bytes(b"")
    (tmp_path / "a" / ".v2.123.partial.mp4").write_bytes(b"")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "v3.mp4").write_bytes(b"")
    (tmp_path / "loop").symlink_to(tmp_path / "a")
    index = VideoIndex(tmp_path, exclude=[tmp_path / "out"])
    assert index.find("v1") in (tmp_path / "a" / "deep" / "v1.mp4",
                                tmp_path / "loop" / "deep" / "v1.mp4")
    assert index.find("v3") is None
    assert index.find(".v2.123.partial") is None
    assert len(index) == 1


def test_planner_reports_unusable_rows(tmp_path: Path) -> None:
    (tmp_path / "Vid_a.mp4").write_bytes(b"")
    (tmp_path / "y_0_10.mp4").write_bytes(b"")
    index = VideoIndex(tmp_path)
    sms = [
        SmsRow(2, "solos", "x", "x_0_10", "../up", "0", "10", "train"),
        SmsRow(3, "solos", "x", "x_0_10", "violin", "10", "0", "train"),
        SmsRow(4, "solos", "a/b", "c/d", "violin", "0", "10", "train"),
        SmsRow(5, "solos", "y", "y_0_10", "violin", "oops", "10", "train"),
    ]
    jobs = plan_sms_jobs(sms, {"solos": index}, tmp_path / "o")
    assert [job.reason for job in jobs[:3]] == [
        "line 2: unusable label '../up'",
        f"no x_0_10.mp4 under {tmp_path}",  # the bad range rules out cutting x.mp4
        "line 4: nothing to look for (YTID 'a/b', time range 0-10, filename 'c/d')",
    ]
    # A bad time range does not matter for copying an already-cut clip.
    assert (jobs[3].action, jobs[3].src) == ("copy", tmp_path / "y_0_10.mp4")
    urmp = [
        UrmpRow(2, "no_slash", "0", "10"),
        UrmpRow(3, "d/Vid_a_0_x", "0", "x"),
        UrmpRow(4, "d/single", "0", "10"),
        UrmpRow(5, "d/Vid_a_0_10", "0", "10"),
    ]
    jobs = plan_urmp_jobs(urmp, index, tmp_path / "o")
    assert [job.reason for job in jobs[:3]] == [
        "line 2: video_id is not <dir>/<name>", "line 3: bad time range 0-x",
        f"no single.mp4 under {tmp_path}"]
    assert jobs[3].action == "cut"
    assert jobs[3].dest == tmp_path / "o" / "d" / "Vid_a_0_10.mp4"
    assert (jobs[3].start_ms, jobs[3].end_ms) == (0, 10)
