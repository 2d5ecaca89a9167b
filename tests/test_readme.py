"""The README's data and circuit-budget commands run as written (the data commands from a checkout beside ``shared/``)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str) -> list[str]:
    """The commands of the first bash block under ``heading`` (comments dropped)."""
    section = README.read_text().split(f"\n## {heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_bring_your_ct_commands_run_as_written(shared_data, tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data)  # the README's ../shared/data
    commands = _block("Bring your CT")
    assert [c.split()[2] for c in commands] == ["inspect", "inspect", "convert", "split"]
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "hqctf"
        result = subprocess.run([sys.executable, "-m", "hqctf", *argv[1:]], cwd=checkout, capture_output=True,
                                text=True)
        assert result.returncode == 0, f"{command}: {result.stderr[-500:]}"
    assert (checkout / "Dataset003_IBSI" / "dataset.json").is_file() and (checkout / "splits.json").is_file()


def test_circuit_budget_command_prints_the_readme_table(tmp_path):
    pytest.importorskip("qiskit")
    (command,) = _block("Circuits on hardware")
    argv = shlex.split(command)
    assert argv[:3] == ["hqctf", "circuits", "budget"]
    result = subprocess.run([sys.executable, "-m", "hqctf", *argv[1:]], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}: {result.stderr[-500:]}"
    section = README.read_text().split("\n## Circuits on hardware\n", 1)[1].split("\n## ", 1)[0]
    assert f"\n{result.stdout.strip()}\n" in section  # the README's table is what the command prints today
