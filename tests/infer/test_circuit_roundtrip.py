"""The hardware-in-the-loop path with Qiskit Aer standing in for hardware: a run's exported OpenQASM 3 circuits,
simulated by Aer, imported back, give the run's own merged weights."""

import json

import pytest
import torch

from hqctf.infer.circuits import GENERATOR_STATE, circuit_budget, export_circuits, import_counts
from hqctf.infer.export import MODEL_JSON, load_run, load_trained_model
from hqctf.qpg import merge
from hqctf.qpg.circuits import measured_layers

qasm3 = pytest.importorskip("qiskit.qasm3")
aer = pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_qasm3_import")

RUNS = {"ry": {}, "rx-rz-cz": {"mode.qpg.rotations": "[rx, rz]", "mode.qpg.entangler": "cz", "mode.qpg.n_layers": 2}}


@pytest.fixture(scope="module", params=list(RUNS))
def exported(request, tiny_run, tmp_path_factory):
    run = tiny_run("qpg", **RUNS[request.param])
    out = tmp_path_factory.mktemp("circuits") / "export"
    return run, export_circuits(run, out)


def _aer(manifest_path, shots: int | None) -> dict:
    """{layer: {channel: {bitstring: value}}} of every exported program run on Aer: exact probabilities (shots
    None) or counts."""
    manifest = json.loads(manifest_path.read_text())
    programs = [(layer, c, qasm3.loads((manifest_path.parent / f).read_text()))
                for layer, d in manifest["layers"].items() for c, f in enumerate(d["files"])]
    sim = aer.AerSimulator(method="statevector", seed_simulator=0)
    out: dict = {layer: {} for layer in manifest["layers"]}
    if shots:
        result = sim.run([p for _, _, p in programs], shots=shots).result()
        for i, (layer, c, _) in enumerate(programs):
            out[layer][str(c)] = result.get_counts(i)
        return out
    circuits = []
    for _, _, program in programs:
        circuit = program.remove_final_measurements(inplace=False)
        circuit.save_statevector()
        circuits.append(circuit)
    result = sim.run(circuits).result()
    for i, (layer, c, _) in enumerate(programs):
        out[layer][str(c)] = result.get_statevector(i).probabilities_dict()
    return out


def test_manifest_describes_every_circuit(exported):
    run, manifest_path = exported
    manifest = json.loads(manifest_path.read_text())
    model, config, _ = load_trained_model(run)
    layers = measured_layers(model)
    assert list(manifest["layers"]) == list(layers) and manifest["mode"] == "qpg"
    assert "int(bitstring, 2) is the basis index" in manifest["qubit_order"]
    assert manifest["qpg"]["rotations"] == list(config.mode.qpg.rotations)
    state = torch.load(manifest_path.parent / manifest["generator_state"].split(":")[0], weights_only=True)
    assert manifest["generator_state"].startswith(GENERATOR_STATE) and list(state) == list(layers)
    for name, gen in layers.items():
        d = manifest["layers"][name]
        assert (d["channels"], d["qubits"], d["layers"], d["entangler"]) == (
            gen.rows, gen.spec.n_qubits, gen.spec.n_layers, gen.spec.entangler)
        assert torch.equal(torch.tensor(d["angles"], dtype=torch.float32), gen.angles.detach())
        assert all((manifest_path.parent / f).is_file() for f in d["files"]) and len(d["files"]) == gen.rows
        assert "angles" not in state[name]
        assert torch.equal(state[name]["mapping.bits_in.weight"], gen.mapping.bits_in.weight.detach())


def _largest_difference(got: dict, expected: dict) -> float:
    assert got.keys() == expected.keys()
    return max((got[k].double() - expected[k].double()).abs().max().item() for k in expected)


def test_exact_aer_probabilities_import_to_the_runs_merged_weights(exported, tmp_path):
    run, manifest_path = exported
    counts = tmp_path / "probabilities.json"
    counts.write_text(json.dumps(_aer(manifest_path, None)))
    model = import_counts(run, counts, tmp_path / "merged", format="state_dict")
    got = torch.load(model, weights_only=True)
    # the run's merged weights with its circuits simulated in float64, as Aer simulates them
    assert _largest_difference(got, merge(load_trained_model(run)[0].double()).state_dict()) < 1e-6
    # and as `hqctf export` writes them: float32 simulation, whose rounding sqrt(p) enlarges near p = 0
    assert _largest_difference(got, load_run(run)[0].state_dict()) < 1e-5
    meta = json.loads((tmp_path / "merged" / MODEL_JSON).read_text())
    assert meta["format"] == "state_dict" and meta["weights_from_counts"] == str(counts.resolve())


def test_counts_split_over_a_folder_and_sampled_with_shots(exported, tmp_path):
    run, manifest_path = exported
    folder = tmp_path / "counts"
    folder.mkdir()
    sampled = _aer(manifest_path, 20_000)
    for i, (layer, channels) in enumerate(sampled.items()):  # one file per layer, as a provider might return them
        (folder / f"{i:03d}.json").write_text(json.dumps({layer: channels}))
    model = import_counts(run, folder, tmp_path / "merged", format="state_dict")
    got, expected = torch.load(model, weights_only=True), load_run(run)[0].state_dict()
    for name in sampled:
        key = f"{name}.weight"
        error = ((got[key] - expected[key]).norm() / expected[key].norm()).item()
        assert 0 < error < 0.15, (key, error)  # shot noise only: a wrong bit order would be off by ~100 %


def test_budget_of_a_run_counts_its_circuits(qpg_run):
    b = circuit_budget(qpg_run, shots=10, shot_rate=100)
    layers = measured_layers(load_trained_model(qpg_run)[0])
    assert [x.layer for x in b.layers] == list(layers) and b.steps_per_epoch == 2  # 8 samples, batch 4
    for x in b.layers:
        gen = layers[x.layer]
        assert (x.circuits, x.qubits, x.angles) == (gen.rows, gen.spec.n_qubits, gen.spec.n_params)
        assert b.executions_per_epoch(x) == 2 * gen.rows * (1 + 2 * gen.spec.n_params)
        assert b.seconds_per_epoch(x) == b.executions_per_epoch(x) * 10 / 100
