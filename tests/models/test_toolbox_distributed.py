"""DDP for real on CPU: 2 gloo processes under torchrun (~25 s; part of `make test`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from tests.models.test_toolbox_finetune import REPO_ROOT, tiny_bert, toy_csv

GRAD_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from accelerate import Accelerator
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base, out = sys.argv[1], sys.argv[2]
    acc = Accelerator(cpu=True)  # CPU processes under torchrun: gloo DDP
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base)
    texts = ["card arrived late", "great service", "fee was wrong", "thanks a lot"]
    labels = torch.tensor([0, 1, 0, 1])
    enc = tok(texts, return_tensors="pt", padding=True)
    half = slice(2 * acc.process_index, 2 * acc.process_index + 2)  # each rank gets half of the batch
    model = acc.prepare(model)
    loss = model(input_ids=enc["input_ids"][half], attention_mask=enc["attention_mask"][half],
                 labels=labels[half]).loss
    acc.backward(loss)
    if acc.is_main_process:
        grads = {n: p.grad for n, p in acc.unwrap_model(model).named_parameters() if p.grad is not None}
        torch.save({"grads": grads, "world": acc.num_processes, "type": str(acc.distributed_type)}, out)
    acc.wait_for_everyone()
    acc.end_training()  # destroys the process group: left to interpreter exit, gloo can abort (exit -6)
    """
)


def _torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    from tests.conftest import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", *args]  # fmt: skip
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_ddp_two_processes_match_single_process_gradients(tmp_path: Path, embedder_path: Path) -> None:
    from transformers import BertConfig

    model, tok = tiny_bert(embedder_path)
    cfg: BertConfig = model.config
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    model.save_pretrained(str(tmp_path / "base"))
    tok.save_pretrained(str(tmp_path / "base"))
    (tmp_path / "grad.py").write_text(GRAD_SCRIPT)
    proc = _torchrun([str(tmp_path / "grad.py"), str(tmp_path / "base"), str(tmp_path / "ddp.pt")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt")
    assert ddp["world"] == 2 and "MULTI_CPU" in ddp["type"]

    from transformers import AutoModelForSequenceClassification

    single = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "base"))
    enc = tok(
        ["card arrived late", "great service", "fee was wrong", "thanks a lot"], return_tensors="pt", padding=True
    )
    single(**enc, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    ref = {n: p.grad for n, p in single.named_parameters() if p.grad is not None}
    assert set(ref) == set(ddp["grads"])
    for name, g in ref.items():
        torch.testing.assert_close(ddp["grads"][name], g, atol=1e-6, rtol=1e-4, msg=name)


def test_finetune_entry_point_runs_under_torchrun(tmp_path: Path, embedder_path: Path) -> None:
    import yaml

    tiny_bert(embedder_path, tmp_path / "base")
    data = toy_csv(tmp_path / "toy.csv", 64)
    cfg = {
        "task": "classify", "model": str(tmp_path / "base"), "output_dir": str(tmp_path / "run"),
        "data": {"train": str(data)}, "method": {"kind": "lora", "r": 4},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-2, "max_len": 16},
    }  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    proc = _torchrun(["-m", "models.finetune_main", str(tmp_path / "run.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["distributed"]["processes"] == 2
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
