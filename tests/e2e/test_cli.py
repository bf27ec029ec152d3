"""The `otelpipe` command as a real process: exit codes and stderr as a user sees them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_subprocess_validate(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("exporters: {nop: {}}\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == ("invalid configuration (1 problem):\n"
                           "  error: service: field required (it lists the pipelines to run)\n")
