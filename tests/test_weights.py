"""Weights registry, cache and downloader, against a loopback HTTP server (no internet)."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from saganet import leftovers, weights
from saganet.errors import UserInputError
from saganet.weights import (
    GROUPS,
    REGISTRY,
    DownloadError,
    HubRepo,
    WeightFile,
    cache_dir,
    download,
    entry_status,
    fetch_group,
    hf_cache_dir,
    hub_snapshot,
    resolve,
    transfer,
)
from saganet.weights.__main__ import main
from tests.shared import EXAMPLES as SHARED_EXAMPLES
from tests.shared import need

OFFLINE_VARS = ("SAGANET_OFFLINE", "HF_HUB_OFFLINE")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        server = self.server
        with server.lock:
            server.hits[self.path] += 1
        if self.path in server.redirects:
            self.send_response(302)
            self.send_header("Location", server.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        time.sleep(server.delay)
        self.send_response(200)
        # A truncated transfer: announce more bytes than are sent, then close the connection.
        missing = 1000 if self.path in server.truncated else 0
        self.send_header("Content-Length", server.lengths.get(self.path, str(len(body) + missing)))
        self.end_headers()
        # A held transfer stops half-way until the test releases it: however slowly the test
        # or the caller runs, the caller is still downloading when the test interrupts it.
        held = self.path in server.held
        first = len(body) // 2 if held else len(body)
        try:
            self.wfile.write(body[:first])
            if held:
                server.released.wait()
            self.wfile.write(body[first:])
        except OSError:  # the client hung up
            pass
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.truncated: set[str] = set()
        self.redirects: dict[str, str] = {}  # path -> Location of a 302
        self.lengths: dict[str, str] = {}  # path -> Content-Length sent instead of the true one
        self.held: set[str] = set()
        self.released = threading.Event()
        self.hits: Counter[str] = Counter()
        self.delay = 0.0
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def serve(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.url(path)


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.released.set()  # held transfers end (into closed connections)
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start online whatever the caller's environment says."""
    for var in (*OFFLINE_VARS, "SAGANET_CACHE", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)


def _leftovers(folder: Path) -> list[str]:
    """Files a failed download might leave behind (temporary parts, destinations)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def _registry(server: _Server, **bodies: bytes) -> dict[str, WeightFile]:
    return {name: WeightFile(name, server.serve(f"/{name}", body), _md5(body), "weights")
            for name, body in bodies.items()}


# ---- download() -----------------------------------------------------------------------------

def test_download_places_verified_file(server: _Server, tmp_path: Path) -> None:
    body = os.urandom(3 * (1 << 20) + 17)  # several chunks
    dest = tmp_path / "sub" / "a.pth"
    assert download(server.serve("/a", body), dest, _md5(body), progress=False) == dest
    assert dest.read_bytes() == body
    assert _leftovers(dest.parent) == ["a.pth", "a.pth.md5ok"]
    umask = os.umask(0)
    os.umask(umask)
    # A shared cache needs files readable by others, as the umask allows.
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~umask


def test_download_wrong_md5_names_file_and_both_digests(server: _Server, tmp_path: Path) -> None:
    body, wrong = b"payload", "0" * 32
    with pytest.raises(DownloadError) as info:
        download(server.serve("/a", body), tmp_path / "a.pth", wrong, progress=False)
    message = str(info.value)
    assert "a.pth" in message and wrong in message and _md5(body) in message
    assert _leftovers(tmp_path) == []


def test_interrupted_transfer_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    url = server.serve("/a", b"x" * 5000)
    server.truncated.add("/a")
    with pytest.raises(DownloadError, match="interrupted: received 5000 of 6000 bytes"):
        download(url, tmp_path / "a.pth", progress=False)
    assert _leftovers(tmp_path) == []


def _start_fetch(server: _Server, root: Path, name: str, body: bytes) -> subprocess.Popen:
    """``python -m saganet.weights fetch`` of one file whose body the server holds back
    half-way (until the test sets ``server.released``), once its part exists."""
    url = server.serve(f"/{name}", body)
    server.held.add(f"/{name}")
    script = ("import sys; from saganet.weights import WeightFile; "
              "from saganet.weights.__main__ import main; "
              f"sys.exit(main(['fetch', 'g', '--weights_dir', {str(root)!r}], "
              f"registry={{{name!r}: WeightFile({name!r}, {url!r}, {_md5(body)!r}, "
              "'weights')}, groups={'g': (" f"{name!r},)}}))")
    fetch = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(p.suffix == ".part" for p in root.glob("weights/.*")):  # transfer begun
        assert fetch.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    return fetch


def _terminate(fetch: subprocess.Popen) -> int:
    """SIGTERM a fetch of :func:`_start_fetch` and return its exit status. Its body is still
    held back, so the fetch can only end by reacting to the signal, never by completing."""
    fetch.terminate()
    try:
        fetch.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        fetch.kill()
        fetch.communicate()
        pytest.fail("the fetch still ran 30 s after SIGTERM")
    return fetch.returncode


def test_leftovers_of_a_killed_download_are_removed_by_the_next_run(
        server: _Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    body = os.urandom(1 << 20)
    fetch = _start_fetch(server, tmp_path, "a.pth", body)
    fetch.kill()  # SIGKILL: no handler runs
    fetch.communicate(timeout=30)
    assert fetch.returncode == -9
    folder = tmp_path / "weights"
    left = sorted(p.name for p in folder.iterdir())
    assert len(left) == 2 and ".a.pth.lock" in left  # reproduced: a part and the lock
    assert any(name.startswith(".a.pth.") and name.endswith(".part") for name in left)
    # The next run using the cache, for another file, removes both and logs each.
    other = b"other"
    registry = _registry(server, **{"b.pth": other})
    with caplog.at_level(logging.INFO, logger="saganet.leftovers"):
        assert resolve("b.pth", tmp_path, registry=registry, progress=False).read_bytes() \
            == other
    assert sorted(p.name for p in folder.iterdir()) == ["b.pth", "b.pth.md5ok"]
    removed = [r.getMessage() for r in caplog.records if r.name == "saganet.leftovers"]
    assert sorted(m.split(",")[0] for m in removed) == [f"removed {folder / n}" for n in left]


def test_a_running_download_is_left_alone(server: _Server, tmp_path: Path) -> None:
    body = os.urandom(1 << 20)
    fetch = _start_fetch(server, tmp_path, "a.pth", body)
    try:
        folder = tmp_path / "weights"
        running = sorted(folder.iterdir())
        other = b"other"
        resolve("b.pth", tmp_path, registry=_registry(server, **{"b.pth": other}),
                progress=False)
        assert all(p.exists() for p in running)
    finally:
        status = _terminate(fetch)
    assert status == 128 + 15


def test_debug_weights_lock_of_a_killed_run_is_removed(tmp_path: Path) -> None:
    lock = tmp_path / ".debug_weights.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from saganet.fileio import exclusive\n"
         f"with exclusive({str(lock)!r}):\n    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert weights.remove_leftovers(tmp_path) == []  # held: not abandoned
    holder.kill()
    holder.communicate(timeout=30)
    assert lock.exists()  # reproduced: SIGKILL leaves the lock file
    leftovers._swept.clear()  # a new run
    assert weights.remove_leftovers(tmp_path) == [lock] and not lock.exists()


def test_sigterm_during_fetch_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    fetch = _start_fetch(server, tmp_path, "a.pth", os.urandom(1 << 20))
    assert _terminate(fetch) == 128 + 15
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == []


def test_ctrl_c_during_fetch_is_one_line_and_leaves_nothing(server: _Server,
                                                           tmp_path: Path) -> None:
    fetch = _start_fetch(server, tmp_path, "a.pth", os.urandom(1 << 20))
    fetch.send_signal(signal.SIGINT)
    try:
        _, err = fetch.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        fetch.kill()
        fetch.communicate()
        pytest.fail("the fetch still ran 30 s after Ctrl-C")
    assert fetch.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("python -m saganet.weights: interrupted")
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == []


def test_http_error_is_reported(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/absent"), tmp_path / "a.pth", progress=False)
    assert _leftovers(tmp_path) == []


def test_redirect_loop_is_one_line(server: _Server, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    server.redirects["/a.pth"] = "/a.pth"
    registry = {"a.pth": WeightFile("a.pth", server.url("/a.pth"), _md5(b"a"), "weights")}
    code = main(["fetch", "g", "--weights_dir", str(tmp_path)], registry=registry,
                groups={"g": ("a.pth",)})
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "HTTP 302" in err and "infinite loop" in err
    assert server.hits["/a.pth"] > 1  # the redirect was followed, then refused
    assert _leftovers(tmp_path / "weights") == []


def test_content_length_that_is_no_number_reads_to_the_end(server: _Server,
                                                          tmp_path: Path) -> None:
    body = os.urandom(3000)
    url = server.serve("/a", body)
    server.lengths["/a"] = "lots"
    dest = download(url, tmp_path / "a.pth", _md5(body), progress=False)
    assert dest.read_bytes() == body


def test_folder_in_the_way_of_a_download_is_an_error(server: _Server, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    in_the_way = tmp_path / "weights" / "a.pth"
    (in_the_way / "inside").mkdir(parents=True)
    for md5 in (_md5(b"a"), None):  # hashed, or taken as delivered: neither is a file
        registry = {"a.pth": WeightFile("a.pth", server.serve("/a.pth", b"a"), md5, "weights")}
        code = main(["fetch", "g", "--weights_dir", str(tmp_path)], registry=registry,
                    groups={"g": ("a.pth",)})
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert f"{in_the_way}: is in the way of the download" in err
    assert server.hits["/a.pth"] == 0
    assert [p.name for p in in_the_way.iterdir()] == ["inside"]


# ---- resolve() / fetch_group() --------------------------------------------------------------

def test_concurrent_resolves_download_once(server: _Server, tmp_path: Path) -> None:
    registry = _registry(server, **{"a.pth": os.urandom(4096)})
    server.delay = 0.5  # long enough for the second caller to find the lock taken
    start = threading.Barrier(2)
    results: list[Path] = []

    def worker() -> None:
        start.wait()
        results.append(resolve("a.pth", tmp_path, registry=registry, progress=False))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.hits["/a.pth"] == 1
    assert results == [tmp_path / "weights" / "a.pth"] * 2


def test_resolve_all_reports_each_downloads_progress(server: _Server, tmp_path: Path) -> None:
    """``on_progress`` hears of each file downloaded, by name: once as it starts, then after
    every chunk, up to its size; a file already in the cache is not reported; a size the
    server does not send is None."""
    bodies = {"a.pth": os.urandom(2 * transfer._CHUNK + 17), "b.pth": b"small"}
    registry = _registry(server, **bodies)
    server.lengths["/b.pth"] = "unknown"
    resolve("b.pth", tmp_path, registry=registry, progress=False)
    reports: list[tuple[str, int, int | None]] = []
    weights.resolve_all(["a.pth", "b.pth"], tmp_path, registry=registry, progress=False,
                        on_progress=lambda *report: reports.append(report))
    size = len(bodies["a.pth"])
    chunks = -(-size // transfer._CHUNK)
    assert reports[0] == ("a.pth", 0, size) and reports[-1] == ("a.pth", size, size)
    assert len(reports) == chunks + 1 and {name for name, _, _ in reports} == {"a.pth"}
    received = [done for _, done, _ in reports]
    assert received == sorted(received)
    reports.clear()
    (tmp_path / "weights" / "b.pth").unlink()
    weights.resolve_all(["b.pth"], tmp_path, registry=registry, progress=False,
                        on_progress=lambda *report: reports.append(report))
    assert reports == [("b.pth", 0, None), ("b.pth", len(bodies["b.pth"]), None)]


def test_verified_file_is_not_downloaded_or_hashed_again(
        server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = _registry(server, **{"a.pth": b"weights"})
    first = resolve("a.pth", tmp_path, registry=registry, progress=False)

    def no_hashing(path: object) -> str:
        raise AssertionError("the stamp should have spared this hash")

    monkeypatch.setattr(transfer, "md5_of", no_hashing)
    assert resolve("a.pth", tmp_path, registry=registry, progress=False) == first
    assert server.hits["/a.pth"] == 1


def test_file_placed_by_hand_in_flat_folder_is_used(server: _Server, tmp_path: Path) -> None:
    registry = _registry(server, **{"a.pth": b"weights"})
    (tmp_path / "a.pth").write_bytes(b"weights")
    assert resolve("a.pth", tmp_path, offline=True, registry=registry) == tmp_path / "a.pth"
    assert server.hits["/a.pth"] == 0
    assert (tmp_path / "a.pth.md5ok").is_file()


def test_damaged_stamp_is_hashed_again_and_rewritten(server: _Server, tmp_path: Path) -> None:
    body = b"weights"
    registry = _registry(server, **{"a.pth": body})
    path = resolve("a.pth", tmp_path, registry=registry, progress=False)
    stamp = path.with_name(path.name + transfer.STAMP_SUFFIX)
    good = stamp.read_bytes()
    stamp.write_bytes(b"\xff\xfe" + good[2:])  # not UTF-8 any more
    assert resolve("a.pth", tmp_path, offline=True, registry=registry) == path
    assert stamp.read_bytes() == good and path.read_bytes() == body
    assert server.hits["/a.pth"] == 1


def test_corrupted_file_is_downloaded_again(server: _Server, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    registry = _registry(server, **{"a.pth": b"weights"})
    path = resolve("a.pth", tmp_path, registry=registry, progress=False)
    path.write_bytes(b"weightz")  # same size, new content and mtime: the stamp no longer fits
    with caplog.at_level(logging.WARNING):
        assert resolve("a.pth", tmp_path, registry=registry, progress=False) == path
    assert path.read_bytes() == b"weights"
    assert server.hits["/a.pth"] == 2
    assert "fails its check: has md5" in caplog.text


def test_corrupted_file_offline_is_an_error(server: _Server, tmp_path: Path) -> None:
    registry = _registry(server, **{"a.pth": b"weights"})
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "a.pth").write_bytes(b"garbage")
    with pytest.raises(UserInputError, match="fails its check: has md5"):
        resolve("a.pth", tmp_path, offline=True, registry=registry)
    assert server.hits["/a.pth"] == 0


def test_file_without_checksum_is_used_with_warning(server: _Server, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    registry = {"e.pth": WeightFile("e.pth", server.serve("/e.pth", b"abc"), None, "ext")}
    with caplog.at_level(logging.WARNING):
        path = resolve("e.pth", tmp_path, registry=registry, progress=False)
    assert path.read_bytes() == b"abc"
    assert "no published checksum" in caplog.text
    assert entry_status(registry["e.pth"], tmp_path) == ("no checksum", path)


@pytest.mark.parametrize("how", ["argument", *OFFLINE_VARS])
def test_offline_error_lists_every_missing_file_and_where(
        server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    registry: dict[str, WeightFile | HubRepo] = {
        **_registry(server, **{"a.pth": b"a", "b.pth": b"b"}),
        "org/repo": HubRepo("org/repo", ("config.json", "model.pt")),
    }
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "b.pth").write_bytes(b"b")  # present: must not be listed
    groups = {"g": ("a.pth", "b.pth", "org/repo")}
    if how != "argument":
        monkeypatch.setenv(how, "1")
    with pytest.raises(UserInputError) as info:
        fetch_group("g", tmp_path, offline=True if how == "argument" else None,
                    registry=registry, groups=groups)
    message = str(info.value)
    assert "\n" not in message
    # Files, not entries: a.pth and each file of the hub repository.
    assert f"{1 + len(registry['org/repo'].files)} file(s) are missing" in message
    assert f"download {registry['a.pth'].url} to {tmp_path / 'weights' / 'a.pth'}" in message
    assert "b.pth" not in message
    hub_dir = tmp_path / "hub" / "org" / "repo"
    assert f"hf download org/repo config.json model.pt --local-dir {hub_dir}" in message
    assert sum(server.hits.values()) == 0


def test_unknown_names_list_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=r"unknown weight file 'nope.pth'.*saganet\.pth"):
        resolve("nope.pth", tmp_path)
    with pytest.raises(UserInputError, match=r"unknown weights group 'nope'.*saganet_small"):
        fetch_group("nope", tmp_path)


def test_debug_group_needs_nothing(tmp_path: Path) -> None:
    assert fetch_group("debug", tmp_path, offline=True) == {}


# ---- hub repositories -----------------------------------------------------------------------

def test_hub_files_placed_by_hand_are_found_offline(tmp_path: Path) -> None:
    folder = tmp_path / "hub" / "org" / "repo"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with pytest.raises(UserInputError, match=r"model\.pt"):
        hub_snapshot("org/repo", ["config.json", "model.pt"], tmp_path, offline=True)
    (folder / "model.pt").write_bytes(b"w")
    assert hub_snapshot("org/repo", ["config.json", "model.pt"], tmp_path, offline=True) == folder


def test_hub_download_that_cannot_write_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    hf_cache = hf_cache_dir(tmp_path)

    def full_disk(repo_id: str, *, local_files_only: bool = False, **kwargs: object) -> str:
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        blob = hf_cache / f"models--{repo_id.replace('/', '--')}" / "blobs" / "x.incomplete"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(blob))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", full_disk)
    registry = {"org/repo": HubRepo("org/repo", ("config.json",))}
    code = main(["fetch", "g", "--weights_dir", str(tmp_path)], registry=registry,
                groups={"g": ("org/repo",)})
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "org/repo" in err and str(hf_cache) in err and os.strerror(errno.ENOSPC) in err
    # The remedy is named for the command line and for Python (load_models reaches it too).
    assert "--weights_dir (weights_dir= from Python)" in err


def test_hub_cache_snapshot_is_found_offline(tmp_path: Path) -> None:
    # The layout huggingface_hub writes: refs/main names the commit whose snapshot holds files.
    repo_cache = hf_cache_dir(tmp_path) / "models--org--repo"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_cache / "refs").mkdir(parents=True)
    (repo_cache / "refs" / "main").write_text(commit)
    snapshot = repo_cache / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert hub_snapshot("org/repo", ["config.json"], tmp_path, offline=True) == snapshot
    with pytest.raises(UserInputError, match=r"model\.pt"):
        hub_snapshot("org/repo", ["config.json", "model.pt"], tmp_path, offline=True)


# ---- cache location -------------------------------------------------------------------------

def test_cache_location_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "saganet"
    assert hf_cache_dir() == tmp_path / "xdg" / "saganet" / "hf"
    monkeypatch.setenv("SAGANET_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    assert hf_cache_dir() == tmp_path / "hfhome" / "hub"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert hf_cache_dir(tmp_path / "arg") == tmp_path / "arg" / "hf"


@pytest.mark.parametrize("where", ["SAGANET_CACHE", "XDG_CACHE_HOME", "weights_dir"])
def test_a_cache_that_is_a_file_is_one_clear_error(where: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    if where == "weights_dir":
        with pytest.raises(UserInputError, match="weights folder: it is not a folder"):
            cache_dir(blocker)
        return
    monkeypatch.setenv(where, str(blocker))
    with pytest.raises(UserInputError, match=f"{where} folder: it is not a folder"
                       if where == "SAGANET_CACHE" else f"under {where}: {blocker} is not"):
        cache_dir()
    # Offline mode used to list the file as missing "under" the file.
    with pytest.raises(UserInputError, match="is not a folder"):
        resolve(next(iter(REGISTRY)), offline=True)


# ---- the published registry -----------------------------------------------------------------

def test_groups_name_registered_entries() -> None:
    for group, names in GROUPS.items():
        assert all(name in REGISTRY for name in names), group
    for entry in REGISTRY.values():
        if isinstance(entry, WeightFile):
            assert entry.url.startswith("https://") and entry.url.endswith("/" + entry.name)
            assert entry.md5 is None or (len(entry.md5) == 32 and int(entry.md5, 16) >= 0)
    assert {"saganet.pth", "v1-44.pth"} <= set(GROUPS["saganet_small"])
    assert REGISTRY["empty_string.pth"].md5 is None


def test_registered_examples_match_the_shared_copies(tmp_path: Path) -> None:
    need(SHARED_EXAMPLES)
    for name in GROUPS["example"]:
        (tmp_path / name).symlink_to(SHARED_EXAMPLES / name)
    paths = fetch_group("example", tmp_path, offline=True)
    assert list(paths) == list(GROUPS["example"])
    assert all(path.parent == tmp_path for path in paths.values())


# ---- command line ---------------------------------------------------------------------------

def test_cli_fetch_and_list(server: _Server, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    registry = _registry(server, **{"a.pth": b"a", "b.pth": b"b"})
    groups = {"g": ("a.pth", "b.pth")}
    assert main(["fetch", "g", "--weights_dir", str(tmp_path)], registry=registry,
                groups=groups) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"a.pth\t{tmp_path / 'weights' / 'a.pth'}",
                   f"b.pth\t{tmp_path / 'weights' / 'b.pth'}"]
    assert main(["list", "--weights_dir", str(tmp_path)], registry=registry, groups=groups) == 0
    listing = capsys.readouterr().out
    assert listing.count(" ok ") == 2 and "group g: a.pth, b.pth" in listing


def test_cli_offline_missing_file_exits_2_with_one_line(
        server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = _registry(server, **{"a.pth": b"a"})
    code = main(["fetch", "g", "--weights_dir", str(tmp_path), "--offline"],
                registry=registry, groups={"g": ("a.pth",)})
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("python -m saganet.weights: error: offline mode is on")
    assert str(tmp_path / "weights" / "a.pth") in err


def test_cli_unwritable_cache_exits_2_with_one_line(
        server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = _registry(server, **{"a.pth": b"a"})
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc (Linux)")
    # /proc is a folder in which even root can create nothing: it stands for one without
    # write permission, which the tests cannot make when they run as root.
    unwritable = Path("/proc") / f"saganet-test-{tmp_path.name}"
    code = main(["fetch", "g", "--weights_dir", str(unwritable)], registry=registry,
                groups={"g": ("a.pth",)})
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "cannot write to the weights folder" in err and str(unwritable) in err
    assert "--weights_dir (weights_dir= from Python)" in err
    # A file where a folder must be: named before anything is fetched.
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    code = main(["fetch", "g", "--weights_dir", str(blocker / "cache")], registry=registry,
                groups={"g": ("a.pth",)})
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"weights folder: {blocker} is not a folder" in err and str(blocker / "cache") in err
    assert server.hits["/a.pth"] == 0


def test_cli_entry_point_user_error_has_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "SAGANET_CACHE": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "saganet.weights", "fetch", "nope"],
                         capture_output=True, text=True, env=env, check=False)
    assert run.returncode == 2
    assert run.stderr.startswith("python -m saganet.weights: error: unknown weights group")
    assert "Traceback" not in run.stderr
    ok = subprocess.run([sys.executable, "-m", "saganet.weights", "fetch", "debug"],
                        capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0, ok.stderr


# ---- a new registry entry (docs/weights.md) --------------------------------------------------

def test_new_entry_of_the_wrong_size_is_one_line_naming_both_sizes(
        server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The download did not check the size: a file of the right md5 was placed, then refused
    # as failing "its md5 check" and downloaded again on every later run.
    body = b"weights" * 100
    registry = {"new.pth": WeightFile("new.pth", server.serve("/new.pth", body), _md5(body),
                                      "weights", size=len(body) + 1)}
    for _ in range(2):
        code = main(["fetch", "g", "--weights_dir", str(tmp_path)], registry=registry,
                    groups={"g": ("new.pth",)})
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert "new.pth" in err and f"expected {len(body) + 1} bytes, got {len(body)}" in err
    assert _leftovers(tmp_path / "weights") == []


def test_without_a_checksum_an_existing_file_of_another_size_is_downloaded_again(
        server: _Server, tmp_path: Path) -> None:
    """download() given a size but no md5 kept any existing file, even one cut short."""
    body = b"published weights"
    url = server.serve("/plain.pth", body)
    dest = tmp_path / "plain.pth"
    dest.write_bytes(body[:5])
    assert download(url, dest, md5=None, size=len(body), progress=False) == dest
    assert dest.read_bytes() == body
    dest.write_bytes(b"x" * len(body))  # the size is all there is to check: kept
    download(url, dest, md5=None, size=len(body), progress=False)
    assert dest.read_bytes() == b"x" * len(body)


def test_a_cached_file_that_fails_its_check_is_named_with_what_it_is(
        server: _Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    body = b"published"
    registry = {"a.pth": WeightFile("a.pth", server.serve("/a.pth", body), _md5(body),
                                    "weights", size=len(body))}
    cached = tmp_path / "weights" / "a.pth"
    cached.parent.mkdir(parents=True)
    longer = b"other bytes, another length"
    cached.write_bytes(longer)
    with caplog.at_level("WARNING"):
        resolve("a.pth", tmp_path, registry=registry, progress=False)
    assert f"{cached} fails its check: is {len(longer)} bytes, expected {len(body)}" in caplog.text
    same_size = b"x" * len(body)
    cached.write_bytes(same_size)
    with caplog.at_level("WARNING"):
        resolve("a.pth", tmp_path, registry=registry, progress=False)
    assert (f"{cached} fails its check: has md5 {_md5(same_size)}, expected {_md5(body)}"
            in caplog.text)
