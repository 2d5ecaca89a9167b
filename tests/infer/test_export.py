"""``hqctf export``: the merged network runs where hqctf cannot be imported and predicts exactly as the run."""

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from hqctf.cli import main
from hqctf.infer.export import MODEL_JSON, load_run
from hqctf.train.config import load_config
from hqctf.train.models import build_model, logits_of


LOADERS = {
    "torchscript": "net = torch.jit.load(folder + '/model.ts'); y = net(x)",
    "onnx": "import onnxruntime as ort; s = ort.InferenceSession(folder + '/model.onnx'); "
            "y = torch.from_numpy(s.run(None, {'image': x.numpy()})[0])",
    "state_dict": "import importlib; a = meta['architecture']; "
                  "cls = getattr(importlib.import_module(a['module']), a['class']); "
                  "net = cls(spatial_dims=a['spatial_dims'], in_channels=1, out_channels=a['out_channels'], "
                  "features=tuple(a['features']), dropout=a['dropout']); "
                  "[setattr(net, n, torch.nn.Identity()) for n in a['identity_children']]; "
                  "net.load_state_dict(torch.load(folder + '/model.pt')); net.eval(); y = net(x)[-1]",
}


@pytest.mark.parametrize("fmt", list(LOADERS))
def test_export_runs_without_hqctf_and_matches_the_run(fmt, qpg_run, tmp_path, capsys):
    out = tmp_path / fmt
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", str(qpg_run), "--format", fmt, "-o", str(out)]) == 0
    assert not caught, [str(w.message) for w in caught]  # the known-harmless tracing warnings are silenced
    printed = capsys.readouterr().out.split()
    model = next(Path(word) for word in printed if Path(word).name.startswith("model."))
    assert printed[0] == "wrote" and model.is_file() and model.parent == out and str(out / MODEL_JSON) in printed
    meta = json.loads((out / MODEL_JSON).read_text())
    assert meta["mode"] == "qpg" and meta["labels"]["1"] == "Brainstem" and meta["patch_size"] == [32, 32]
    # the run's own (wrapped, generator-driven) network on a fixed input
    config = load_config(qpg_run / "config.yaml")
    state = torch.load(qpg_run / "best.pt", weights_only=False)
    wrapped = build_model(config.model, config.mode, 8)
    wrapped.load_state_dict(state["model"])
    torch.manual_seed(0)
    x = torch.randn(2, 1, 48, 32)  # another size than the trace's example: dynamic spatial axes
    with torch.no_grad():
        expected = logits_of(wrapped.eval()(x))
    torch.save({"x": x, "y": expected}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import json, sys
        for name in ("hqctf", "hqctf.quantum", "hqctf.qpg"):
            sys.modules[name] = None  # importing any of them now fails
        import torch
        folder = {str(out)!r}
        meta = json.load(open(folder + '/{MODEL_JSON}'))
        blob = torch.load({str(tmp_path / "io.pt")!r})
        x = blob["x"]
        with torch.no_grad():
            {LOADERS[fmt]}
        err = (y - blob["y"]).abs().max().item()
        assert err < 1e-4, err
        assert torch.equal(y.argmax(1), blob["y"].argmax(1))
        print("ok", err)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]


def test_merged_network_has_no_generators(qpg_run):
    net, config, labels = load_run(qpg_run)
    assert not any(".qpg." in name for name, _ in net.named_parameters())
    assert config.mode.name == "qpg" and labels[7] == "Mandible"


def test_onnx_without_the_onnx_extra_is_one_line_and_exit_2(qpg_run, tiny_dataset, tmp_path, monkeypatch, capsys):
    assert main(["export", str(qpg_run), "--format", "onnx", "-o", str(tmp_path / "onnx")]) == 0  # with the extra
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # importing onnxruntime now fails
    ct = tiny_dataset / "imagesTr" / "pt_4_0000.nii.gz"
    assert main(["predict", str(tmp_path / "onnx"), "-i", str(ct), "-o", str(tmp_path / "pred"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"hqctf predict: error: {tmp_path / 'onnx' / 'model.onnx'}: predicting with an ONNX export needs "
                   'onnxruntime, which is not installed: pip install "hqctf[onnx]"')
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", str(qpg_run), "--format", "onnx", "-o", str(tmp_path / "onnx2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'hqctf export: error: --format onnx needs onnx, which is not installed: pip install "hqctf[onnx]"'
    assert not (tmp_path / "pred").exists() and not (tmp_path / "onnx2").exists()
