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
