"""``app.py`` as a user starts it: instant ``--help``, one-line errors with exit status 2, and a
real start that serves the page on 127.0.0.1 and removes its files on Ctrl-C or ``kill``."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from saganet.app.launch import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def run_python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=timeout, check=False)


def test_help_is_instant_and_imports_nothing_heavy() -> None:
    done = run_python("app.py", "--help")
    assert done.returncode == 0
    for flag in ("--host", "--port", "--share", "--variant", "--weights_dir", "--device",
                 "--offline", "--segment_model", "--max_upload_mb", "--max_seconds",
                 "--max_megapixels", "--max_clicks", "--feature_cache_mb"):
        assert flag in done.stdout
    probe = run_python("-c", "import sys; from saganet.app.launch import build_parser; "
                             "build_parser().parse_args([]); "
                             "print(sorted({'gradio', 'torch', 'av'} & set(sys.modules)))")
    assert probe.stdout.strip() == "[]"
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.share) == ("127.0.0.1", None, False)


@pytest.mark.parametrize(("argv", "message"), [
    (["--variant", "nope"], "unknown variant"),
    (["--variant", "debug", "--max_objects", "0"], "at least 1"),
    (["--variant", "debug", "--max_upload_mb", "inf"], "finite number of MB"),
    (["--variant", "debug", "--max_megapixels", "0"], "must be positive"),
    (["--variant", "debug", "--device", "warp"], "unknown device"),
    (["--variant", "debug", "--max_queue", "0"], "queue limit must be at least 1"),
    (["--variant", "debug", "--idle_hours", "-1"], "idle time must be 0 or more hours"),
    (["--variant", "debug", "--auth_file", "no_such_logins.txt"],
     "no_such_logins.txt: cannot read the logins"),
])
def test_bad_flags(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("app.py: error: ") and message in err[0]


@pytest.mark.parametrize("flags", [[], ["--feature_cache_mb", "0"], ["--feature_cache_mb", "1.5"]])
def test_the_feature_cache_budget_reaches_the_engine(monkeypatch, flags) -> None:
    """``--feature_cache_mb`` (MB: 10^6 bytes) is the budget of the engine's feature cache;
    by default the library's."""
    from saganet.app import engine as engine_module
    from saganet.app.launch import start
    from saganet.soundtrack.feature_cache import DEFAULT_MAX_BYTES

    made, real = [], engine_module.Engine

    class MadeError(Exception):
        pass

    def engine(settings, **kwargs):
        made.append(real(settings, **kwargs))
        raise MadeError  # no models, no server: the budget is all this test looks at

    monkeypatch.setattr(engine_module, "Engine", engine)
    with pytest.raises(MadeError):
        start(build_parser().parse_args(["--variant", "debug", "--device", "cpu", *flags]))
    expected = round(float(flags[1]) * 10**6) if flags else DEFAULT_MAX_BYTES
    assert made[0].features.max_bytes == expected


@pytest.mark.parametrize("budget", ["-1", "inf", "512MB"])
def test_a_bad_feature_cache_budget_is_a_usage_error(budget, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--variant", "debug", "--feature_cache_mb", budget])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("app.py: error: argument --feature_cache_mb") and budget in last


def test_port_in_use(engine) -> None:
    """A taken port is a user error (one line from ``app.py``), and nothing is left behind."""
    from saganet.app.limits import Limits
    from saganet.app.server import AppServer
    from saganet.errors import UserInputError

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--port", "0"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = AppServer(engine, Limits())
        with pytest.raises(UserInputError, match="cannot serve on"):
            server.launch(port=port, block=False)
    assert not server.sessions.root.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(capsys) -> None:
    assert main(["--variant", "debug", "--device", "cuda"]) == 2
    assert "app.py: error:" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "tracker"), [
    ([], "sam2.1-hiera-tiny"),
    (["--segment_model", "base_plus"], "sam2.1-hiera-base-plus"),  # an alias of base-plus
])
def test_offline_without_weights(tmp_path, capsys, flags, tracker) -> None:
    assert main(["--weights_dir", str(tmp_path), "--offline", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("app.py: error: ") and str(tmp_path) in err
    # Every missing file at once: the model's and the click tracker's.
    assert "saganet.pth" in err and tracker in err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
@pytest.mark.parametrize("stop, status", [(signal.SIGINT, 0), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "kill"])
def test_serves_and_cleans_up_on_ctrl_c(weights_dir, sam2_folder, stop, status) -> None:
    """``python app.py --variant debug``: the page answers on 127.0.0.1; Ctrl-C stops it with
    status 0, ``kill`` (SIGTERM: a service manager, a container stopping) with 143, and either
    way its temporary folder is gone."""
    temp = Path(tempfile.mkdtemp(prefix="app-cli-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temp),
           "GRADIO_TEMP_DIR": str(temp / "gradio")}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--variant", "debug", "--weights_dir", str(weights_dir),
         "--segment_model", str(sam2_folder), "--device", "cpu"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.monotonic() + 180
        lines = []
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"saganet app: (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        assert url, "".join(lines)
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and b"gradio" in response.read().lower()
        assert any(p.name.startswith("saganet-app-") for p in temp.iterdir())
    finally:
        process.send_signal(stop)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == status, rest
    assert not any(p.name.startswith("saganet-app-") for p in temp.iterdir())


def test_logins_and_a_queue_limit(engine, tmp_path) -> None:
    """With logins the page's data, its files and the API answer 401 until one logs in;
    ``gradio_client`` logs in with ``auth=``, a wrong password is refused. The queue takes
    at most ``max_queue`` events, and idle sessions go after ``idle_hours``."""
    import urllib.error

    from gradio_client import Client

    from saganet.app.limits import Limits
    from saganet.app.logins import read_logins
    from saganet.app.server import AppServer

    logins = tmp_path / "logins.txt"
    logins.write_text("# who may use the app\nann:s3cret: with colon\n\nbob:x\n")
    users = read_logins(logins)
    limits = Limits(max_queue=3, idle_hours=2)
    server = AppServer(engine, limits)
    url = server.launch(block=False, logins=users)
    try:
        for path in ("config", "gradio_api/info"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + path, timeout=30)
            assert refused.value.code == 401
        user, password = users[0]
        with pytest.raises(ValueError, match="login"):
            Client(url, auth=(user, password + "!"), verbose=False)
        client = Client(url, auth=(user, password), verbose=False)
        assert "/generate" in client.view_api(print_info=False, return_format="dict")[
            "named_endpoints"]
        client.close()
        # Gradio's own queue object: the limit it enforces.
        assert server.blocks._queue.max_size == limits.max_queue
        assert server.sessions.idle_s == limits.idle_seconds == 2 * 3600
    finally:
        server.close()
