"""The ONNX Runtime form of a sentiment classifier: the same outputs as torch, int8 where asked, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

TEXTS = [
    "$AAPL soars after record results",
    "short",
    "$XYZ slumps after results, guidance cut sharply lower " + "and lower, " * 20,
    "Fed holds rates steady",
]


@pytest.fixture(scope="module")
def member_folder(tmp_path_factory: pytest.TempPathFactory, embedder_path: Path) -> Path:
    """MiniLM with a fresh three-label head, saved as a registered member is (safetensors + tokenizer)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(
        str(embedder_path), num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    folder = tmp_path_factory.mktemp("member")
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(embedder_path)).save_pretrained(str(folder))
    return folder


def _member(folder: Path, runtime: str, quantize: bool, keep_float: tuple[str, ...] = ("classifier",)):  # type: ignore[no-untyped-def]
    from apps.sentiment.classifier import _Member

    return _Member(folder, 64, 8, quantize, keep_float, runtime)


def test_float_graph_matches_torch(member_folder: Path) -> None:
    onnx_lp, onnx_vec = _member(member_folder, "onnx", quantize=False).run(TEXTS)
    torch_lp, torch_vec = _member(member_folder, "torch", quantize=False).run(TEXTS)
    assert onnx_vec is not None and torch_vec is not None
    np.testing.assert_allclose(onnx_lp, torch_lp, atol=1e-4)
    np.testing.assert_allclose(onnx_vec, torch_vec, atol=1e-4)
    assert np.allclose(np.linalg.norm(onnx_vec, axis=1), 1.0, atol=1e-5)


def test_int8_graph_is_quantized_close_and_keeps_float_layers(member_folder: Path) -> None:
    import onnx

    from models.onnx_classifier import float_nodes

    kept = ("classifier", "encoder.layer.0.output.dense")
    m = _member(member_folder, "onnx", quantize=True, keep_float=kept)
    graph = onnx.load(str(m.graph.path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") >= 6 * 6 - 1  # 6 linear layers a block
    # the kept feed-forward output stays a float MatMul under its module's name
    assert [n.name for n in graph.node if n.op_type == "MatMul" and "layer.0/output/dense" in n.name]
    assert not [n.name for n in graph.node if n.op_type == "MatMul" and "layer.1/output/dense" in n.name]
    head = [n for n in graph.node if n.name.startswith("/model/classifier/")]  # the head stays float
    assert head and not [n for n in head if "Integer" in n.op_type or "Quant" in n.op_type]
    assert float_nodes(graph, ("nothing.like.this",)) == []
    lp, vec = m.run(TEXTS)
    ref_lp, ref_vec = _member(member_folder, "onnx", quantize=False).run(TEXTS)
    assert vec is not None and ref_vec is not None
    assert np.all((vec * ref_vec).sum(1) > 0.95)  # int8 noise, not a different model
    assert np.abs(np.exp(lp) - np.exp(ref_lp)).max() < 0.1


def test_graph_is_cached_per_form_and_survives_a_read_only_folder(
    member_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    first = _member(member_folder, "onnx", quantize=True).graph.path
    stamp = first.stat().st_mtime_ns
    again = _member(member_folder, "onnx", quantize=True).graph.path
    assert again == first and first.stat().st_mtime_ns == stamp  # loaded, not exported again
    assert _member(member_folder, "onnx", quantize=False).graph.path != first  # another form, another file
    assert not list(first.parent.glob(".export-*"))  # no half-written leftovers

    ro = tmp_path / "ro"
    shutil.copytree(member_folder, ro, ignore=shutil.ignore_patterns(".onnx"))

    mkdir = Path.mkdir

    def refuse_in_ro(self: Path, *args: object, **kwargs: object) -> None:
        if self.is_relative_to(ro):
            raise PermissionError(f"read-only: {self}")
        mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", refuse_in_ro)  # a folder this user cannot write (tests may run as root)
    m = _member(ro, "onnx", quantize=True)
    assert not (ro / ".onnx").exists() and m.graph.path.is_file()  # exported to the temporary folder instead
    assert m.run(TEXTS[:1])[0].shape == (1, 3)
    stamp = m.graph.path.stat().st_mtime_ns
    assert _member(ro, "onnx", quantize=True).graph.path.stat().st_mtime_ns == stamp  # and found there again


def test_temporary_cache_is_used_only_when_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import tempfile

    from models.onnx_classifier import _temporary_cache

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shared = tmp_path / f"kgnlp-onnx-{os.getuid()}"
    assert _temporary_cache() == shared and (shared.stat().st_mode & 0o777) == 0o700
    shared.chmod(0o777)  # anyone may write there: never read from it
    other = _temporary_cache()
    assert other != shared and other.is_dir() and (other.stat().st_mode & 0o077) == 0
    shared.rmdir()
    shared.symlink_to(other)  # a link, even to a private folder, is not the cache
    assert _temporary_cache() not in (shared, other)


def test_prune_cache_keeps_only_the_served_graph(member_folder: Path, tmp_path: Path) -> None:
    import shutil

    from models.onnx_classifier import prune_cache

    folder = tmp_path / "m"
    shutil.copytree(member_folder, folder, ignore=shutil.ignore_patterns(".onnx"))
    served = _member(folder, "onnx", quantize=True).graph.path
    _member(folder, "onnx", quantize=False)
    assert len(list((folder / ".onnx").glob("*.onnx"))) == 2
    prune_cache(folder, served)
    assert list((folder / ".onnx").glob("*.onnx")) == [served]


def test_unknown_runtime_is_refused(member_folder: Path) -> None:
    from apps.sentiment.classifier import resolve_runtime

    with pytest.raises(ValueError, match="runtime"):
        _member(member_folder, "tensorrt", quantize=False)
    with pytest.raises(ValueError, match="runtime"):
        resolve_runtime("cuda")
    assert resolve_runtime("auto") == "onnx"  # onnxruntime is installed (importorskip above)


def test_auto_falls_back_to_torch_when_a_model_does_not_export(
    member_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import shutil

    from apps.sentiment.classifier import RegisteredClassifier
    from kgnlp.errors import ModelUnavailableError
    from models.onnx_classifier import OnnxClassifier

    folder = tmp_path / "registered"
    shutil.copytree(member_folder, folder / "members" / "0", ignore=shutil.ignore_patterns(".onnx"))
    (folder / "manifest.json").write_text(json.dumps({"members": [{"path": "members/0"}], "quantize": True}))

    def fail(*args: object, **kwargs: object) -> None:
        raise ModelUnavailableError("cannot serve it with ONNX Runtime: unsupported operator")

    monkeypatch.setattr(OnnxClassifier, "build", fail)
    clf = RegisteredClassifier(folder).load()  # auto
    assert clf.runtime == "torch" and clf.info()["runtime"] == "torch"
    assert clf.predict(TEXTS[:2])[0].label in ("negative", "neutral", "positive")
    with pytest.raises(ModelUnavailableError, match="ONNX Runtime"):  # asked for onnx: no silent switch
        RegisteredClassifier(folder, runtime="onnx").load()
