"""``strokegraph ui`` without Gradio, and every other command without importing it."""

from __future__ import annotations

import subprocess
import sys

from strokegraph.app.cli import main


def test_ui_without_gradio_names_the_extra_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # what the import system reports for a missing package
    assert main(["ui"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strokegraph: error: the browser UI needs gradio") and "pip install 'strokegraph[ui]'" in err


def test_help_and_other_commands_never_import_gradio():
    code = (
        "import sys\n"
        "from strokegraph.app import cli\n"
        "for argv in (['--help'], ['ui', '--help'], ['plan', 'a red cat']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('gradio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_the_command_says_where_it_serves_and_a_taken_port_is_one_line(tmp_path):
    import socket
    import time

    import pytest

    pytest.importorskip("gradio", reason="needs pip install 'strokegraph[ui]'")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "strokegraph", "ui", "--runs", str(tmp_path / "runs"), "--port", str(port)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        line = first.stdout.readline()  # printed once the app serves
        assert (
            line.strip() == f"strokegraph ui: http://127.0.0.1:{port}/ (runs in {tmp_path / 'runs'}); Ctrl-C stops it"
        )
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and second.stdout == ""
        assert second.stderr.strip() == (
            f"strokegraph: error: cannot serve on 127.0.0.1:{port} "
            "(in use, or not an address here); give another --port"
        )
        time.sleep(0.1)
        assert first.poll() is None  # the first one keeps serving
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert "launch()" not in (first.stderr.read() if first.stderr else "")
