"""The README's commands run as written, top to bottom, from a checkout beside ``shared/`` (training shortened)."""

import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Appended to `hqctf train` and `hqctf bench` commands: the same commands on 8 patients, one epoch, a tiny network.
SHORT = {"data.max_cases": "8", "data.n_folds": "2", "data.samples_per_epoch": "8", "optim.batch_size": "4",
         "optim.warmup_epochs": "0", "model.features": "[4, 4, 8, 8, 16, 4]", "data.patch_size": "[32, 32]",
         "validation.max_cases": "1", "data.workers": "0"}
TRAIN_SHORT = {**SHORT, "optim.epochs": "1"}
BENCH_SHORT = {**SHORT, "seeds": "[0]", "sizes": "[all]", "modes": "[classical]", "max_epochs": "1", "patience": "1",
               "validation.spectra": "false"}


def _blocks(language: str) -> list[tuple[str, str]]:
    """(heading, body) of every ``language`` code block after the set-up block, in README order."""
    found, heading = [], ""
    for part in re.split(r"(```\w*\n.*?```)", README.read_text(), flags=re.S):
        if part.startswith("```"):
            if part.startswith(f"```{language}\n"):
                found.append((heading, part.split("\n", 1)[1].rsplit("```", 1)[0]))
        else:
            heading = next((line[3:] for line in reversed(part.splitlines()) if line.startswith("## ")), heading)
    return found[1:] if language == "bash" else found  # the first bash block installs (CI runs it)


def _commands(body: str) -> list[list[str]]:
    """Each line's arguments, as the shell splits them (comments dropped)."""
    return [argv for argv in (shlex.split(line, comments=True) for line in body.splitlines()) if argv]


def _shortened(argv: list[str]) -> list[str]:
    overrides = TRAIN_SHORT if argv[1] == "train" and "--resume" not in argv else BENCH_SHORT if argv[1] == "bench" else {}
    return argv + [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture
def checkout(shared_data, tmp_path):
    """A folder laid out like a fresh clone (src/, docs/) with ../shared/data beside it."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "src").symlink_to(ROOT / "src")
    shutil.copytree(ROOT / "docs", root / "docs")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data)
    return root


@pytest.mark.slow
def test_every_command_block_runs_top_to_bottom(checkout):
    blocks = _blocks("bash")
    assert [h for h, _ in blocks] == ["Bring your CT", *["Train, evaluate, compare"] * 4, *["Circuits on hardware"] * 2]
    for _, body in blocks:
        for argv in _commands(body):
            command = shlex.join(argv)
            if argv[:2] == ["pip", "install"]:  # this environment has the test extra, which holds every other
                continue
            assert argv[0] == "hqctf", command
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "hqctf", *_shortened(argv)[1:], *(
                ["--no-progress"] if argv[1] in ("train", "evaluate", "predict", "bench") and "--nproc" not in argv
                else [])], cwd=checkout, capture_output=True, text=True)
            assert result.returncode == 0, f"{command}: {result.stderr[-800:]}"
            print(f"{time.perf_counter() - start:6.1f} s  {command}")
    assert (checkout / "Dataset003_IBSI" / "dataset.json").is_file() and (checkout / "splits.json").is_file()
    assert (checkout / "out" / "dicom" / "image_RTSTRUCT.dcm").is_file()
    assert len(list((checkout / "out" / "nifti").glob("*.nii.gz"))) == 6
    assert "## Bench cpu-small (hqctf bench)" in (checkout / "docs" / "benchmarks.md").read_text()
    assert (checkout / "runs" / "kbp-qpg" / "from-counts" / "hqctf-model.json").is_file()


def test_python_blocks_run(tmp_path):
    blocks = _blocks("python")
    assert len(blocks) == 2
    for _, body in blocks:
        result = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-800:]


def test_circuit_budget_command_prints_the_readme_table(tmp_path):
    pytest.importorskip("qiskit")
    ((heading, body),) = [b for b in _blocks("bash") if "circuits budget" in b[1]]
    (argv,) = _commands(body)
    assert argv[:3] == ["hqctf", "circuits", "budget"]
    result = subprocess.run([sys.executable, "-m", "hqctf", *argv[1:]], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, f"{shlex.join(argv)}: {result.stderr[-500:]}"
    section = README.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    assert f"\n{result.stdout.strip()}\n" in section  # the README's table is what the command prints today
