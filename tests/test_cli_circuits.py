"""``hqctf circuits export | import-counts | budget`` from the command line: outputs, hand-counted budgets, and
bad input as one line, exit 2, nothing written."""

import json
import sys

import pytest

from hqctf.cli import main
from hqctf.infer.export import load_trained_model
from hqctf.qpg.circuits import measured_layers
from hqctf.quantum import simulate

pytest.importorskip("qiskit")

# one targeted layer, hand-countable: the 1x1 final conv reads 8 channels -> 8 weights per output channel -> 3
# qubits; 2 structures + background -> 3 circuits; L = 2 with a CNOT ring -> 6 RY + 6 CNOT, depth 2 x (1 + 3)
SMALL = ["--structures", "2", "--set", "model.features=[4, 4, 8, 8, 16, 8]", "--set", "mode.qpg.n_layers=2",
         "--set", "mode.qpg.target_modules=[final_conv_0_4]", "--set", "mode.qpg.min_compression=0"]


def _table(text: str) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    keys = [k.strip() for k in lines[0].strip("|").split("|")]
    rows = [dict(zip(keys, (v.strip() for v in line.strip("|").split("|")))) for line in lines[1:]]
    return {row["layer"]: row for row in rows}


def test_budget_of_a_hand_countable_config(capsys):
    assert main(["circuits", "budget", "openkbp-2d", *SMALL, "--shots", "100", "--shot-rate", "1000",
                 "--markdown"]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert list(rows) == ["final_conv_0_4", "total"]
    layer = rows["final_conv_0_4"]
    # 64 steps per epoch (1024 samples / batch 16); per step 3 forward + 2 x 6 angles x 3 circuits
    assert layer == {"layer": "final_conv_0_4", "circuits": "3", "qubits": "3", "angles": "6", "1q gates": "6",
                     "2q gates": "6", "depth": "8", "forward/step": "3", "gradient/step": "36",
                     "executions/epoch": "2,496", "shots/epoch": "249,600", "time/epoch": "4.2 min"}
    assert rows["total"]["1q gates"] == "18" and rows["total"]["angles"] == "18"
    assert "64 steps per epoch, 100 shots per execution at 1,000 shots/s; 100 epochs: 6.9 h of shots" in out


def test_budget_reads_a_yaml_config_and_prints_a_table(tmp_path, capsys):
    config = tmp_path / "small.yaml"
    config.write_text("data: {path: nowhere, samples_per_epoch: 40}\noptim: {batch_size: 8, epochs: 3}\n"
                      "model: {features: [4, 4, 8, 8, 16, 8]}\nmode: {name: frozen, qpg: {n_layers: 2, "
                      "target_modules: [final_conv_0_4], min_compression: 0}}\n")
    assert main(["circuits", "budget", str(config), "--structures", "2", "--shots", "10", "--shot-rate", "5"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "final_conv_0_4" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    # frozen circuits: no gradient executions; 5 steps x 3 circuits x 10 shots / 5 Hz = 30 s
    assert cells == ["final_conv_0_4", "3", "3", "6", "6", "6", "8", "3", "0", "15", "150", "30.0 s"]


def test_export_and_import_from_the_command_line(qpg_run, tmp_path, capsys):
    assert main(["circuits", "export", str(qpg_run), "-o", str(tmp_path / "circuits")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote the circuits and {tmp_path / 'circuits' / 'manifest.json'}"
    manifest = json.loads((tmp_path / "circuits" / "manifest.json").read_text())
    counts = tmp_path / "p.json"
    counts.write_text(json.dumps(_probabilities(qpg_run)))
    assert main(["circuits", "import-counts", str(qpg_run), "--counts", str(counts), "-o", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out.split()[:2] == ["wrote", str(tmp_path / "m" / "model.ts")]
    meta = json.loads((tmp_path / "m" / "hqctf-model.json").read_text())
    assert meta["format"] == "torchscript" and meta["weights_from_counts"] == str(counts) and manifest["layers"]


def _probabilities(run) -> dict:
    """{layer: {channel: {bitstring: p}}} of the run's circuits from the built-in simulator."""
    out = {}
    for name, gen in measured_layers(load_trained_model(run)[0]).items():
        probs = simulate(gen.angles.detach().double(), gen.spec, engine="torch")
        n = gen.spec.n_qubits
        out[name] = {str(c): {format(i, f"0{n}b"): p.item() for i, p in enumerate(row)} for c, row in enumerate(probs)}
    return out


def _fails(argv: list[str], message: str, capsys, absent) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and err.startswith(f"hqctf circuits {argv[1]}: error: ") and message in err, err
    assert not absent.exists()


def test_bad_runs_and_missing_qiskit(qpg_run, tiny_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    not_a_run = str(tmp_path / "empty")
    classical = str(tiny_run("classical"))
    counts = tmp_path / "p.json"
    counts.write_text("{}")
    for verb in (["export", not_a_run, "-o", str(out)], ["import-counts", not_a_run, "--counts", str(counts), "-o",
                                                         str(out)], ["budget", not_a_run]):
        _fails(["circuits", *verb], "config.yaml: not found; is", capsys, out)
    for verb in (["export", classical, "-o", str(out)], ["import-counts", classical, "--counts", str(counts), "-o",
                                                         str(out)], ["budget", classical]):
        _fails(["circuits", *verb], "the model has no QPG circuit layers", capsys, out)
    monkeypatch.setitem(sys.modules, "qiskit", None)  # importing qiskit now fails
    _fails(["circuits", "export", str(qpg_run), "-o", str(out)],
           'qiskit is not installed: pip install "hqctf[quantum]"', capsys, out)
    _fails(["circuits", "budget", "openkbp-2d", *SMALL], 'qiskit is not installed: pip install "hqctf[quantum]"',
           capsys, out)


def test_bad_counts(qpg_run, tmp_path, capsys):
    good = _probabilities(qpg_run)
    first = next(iter(good))
    n = len(next(iter(good[first]["0"])))
    cases = {
        "layer": ({**good, "no_such.conv": good[first]}, "'no_such.conv' is not a QPG circuit layer of the run"),
        "missing layer": ({k: v for k, v in good.items() if k != first}, f"no counts for layer {first} channel 0"),
        "missing channel": ({**good, first: {k: v for k, v in good[first].items() if k != "1"}},
                            f"no counts for layer {first} channel 1 (1 of"),
        "channel": ({**good, first: {**good[first], "99": {"0" * n: 1}}}, "channel '99' is not one of 0.."),
        "width": ({**good, first: {**good[first], "0": {"0" * (n + 1): 5}}},
                  f"layer {first} channel 0: bitstring '{'0' * (n + 1)}' is not {n} characters 0/1"),
        "negative": ({**good, first: {**good[first], "0": {"0" * n: -2}}}, "count -2 is not a finite number >= 0"),
        "shape": ({first: [1, 2]}, "expected {layer: {channel: {bitstring: count}}}"),
    }
    out = tmp_path / "out"
    for name, (counts, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(counts))
        _fails(["circuits", "import-counts", str(qpg_run), "--counts", str(path), "-o", str(out)], message, capsys, out)
    (tmp_path / "broken.json").write_text("{")
    _fails(["circuits", "import-counts", str(qpg_run), "--counts", str(tmp_path / "broken.json"), "-o", str(out)],
           "cannot read counts (JSONDecodeError)", capsys, out)
    _fails(["circuits", "import-counts", str(qpg_run), "--counts", str(tmp_path / "absent.json"), "-o", str(out)],
           "counts file not found", capsys, out)
    twice = tmp_path / "twice"
    twice.mkdir()
    for i in range(2):
        (twice / f"{i}.json").write_text(json.dumps(good))
    _fails(["circuits", "import-counts", str(qpg_run), "--counts", str(twice), "-o", str(out)],
           f"layer {first} channel 0: counts given twice", capsys, out)


def test_bad_budget_options(tmp_path, capsys):
    absent = tmp_path / "never"
    for options, message in [(["--shots", "0"], "--shots must be >= 1, got 0"),
                             (["--shots", "-5"], "--shots must be >= 1, got -5"),
                             (["--shot-rate", "0"], "--shot-rate must be a positive number"),
                             (["--structures", "0"], "--structures must be >= 1")]:
        _fails(["circuits", "budget", "openkbp-2d", *options], message, capsys, absent)
    _fails(["circuits", "budget", "no-such-config"], "not a bundled train config", capsys, absent)
    _fails(["circuits", "budget", "openkbp-2d", "--set", "mode.name=classical", "--structures", "7"],
           "the model has no QPG circuit layers", capsys, absent)
    _fails(["circuits", "budget", "openkbp-2d", "--set", "data.path=nowhere"], "give --structures N", capsys, absent)


def test_run_on_aer_gives_counts_that_import(qpg_run, tmp_path, capsys):
    pytest.importorskip("qiskit_aer")
    pytest.importorskip("qiskit_qasm3_import")
    assert main(["circuits", "export", str(qpg_run), "-o", str(tmp_path / "circuits")]) == 0
    counts = tmp_path / "counts.json"
    assert main(["circuits", "run", str(tmp_path / "circuits"), "--shots", "20000", "-o", str(counts)]) == 0
    measured, exact = json.loads(counts.read_text()), _probabilities(qpg_run)
    assert measured.keys() == exact.keys()
    for layer, channels in exact.items():
        assert measured[layer].keys() == channels.keys()
        for channel, probs in channels.items():
            assert sum(measured[layer][channel].values()) == 20000
            # frequencies within 5 standard errors of the built-in engine's exact probabilities
            for bits, p in probs.items():
                f = measured[layer][channel].get(bits, 0) / 20000
                assert abs(f - p) <= 5 * (p * (1 - p) / 20000) ** 0.5 + 1e-3, (layer, channel, bits)
    assert main(["circuits", "import-counts", str(qpg_run), "--counts", str(counts), "-o", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    _fails(["circuits", "run", str(tmp_path), "--shots", "10", "-o", str(tmp_path / "c.json")],
           "manifest.json: not a circuits export", capsys, tmp_path / "c.json")
    _fails(["circuits", "run", str(tmp_path / "circuits"), "--shots", "0", "-o", str(tmp_path / "c.json")],
           "--shots must be >= 1", capsys, tmp_path / "c.json")
