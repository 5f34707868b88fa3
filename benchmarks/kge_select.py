"""Choose a KGE configuration on the validation split only, then report its test metrics once.

For each setting of a small grid around ``benchmarks/kge.py``'s configuration (the N3 weight,
and optionally the learning rate), train with early stopping on validation MRR, score the full
validation split (filtered, both directions), keep the best, and only then evaluate that one
configuration on the test split. Test metrics of the other settings are never computed.

    .venv/bin/python benchmarks/kge_select.py kinship --reg 1e-3,5e-3,1e-2,5e-2
    .venv/bin/python benchmarks/kge_select.py umls --reg 5e-3,1e-2,5e-2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from benchmarks.kge import BEST, FOLDERS, PUBLISHED, default_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=sorted(FOLDERS))
    ap.add_argument("--reg", default="1e-3,5e-3,1e-2,5e-2", help="comma list of N3 weights")
    ap.add_argument("--lr", default=None, help="comma list of learning rates (default: the benchmark's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    from kgnlp.cpu import cpu_key

    print(f"CPU: {cpu_key()}", flush=True)  # speed figures depend on it
    folder = (args.data or default_data()) / FOLDERS[args.dataset]
    if not folder.exists():
        print(f"skipped: dataset folder {folder} not found (set --data or KGNLP_SHARED_DATA)")
        return 0

    import torch

    from kg.embeddings.data import load_tsv_dataset
    from kg.embeddings.evaluation import FilterIndex, evaluate
    from kg.embeddings.models import build_model
    from kg.embeddings.training import TrainConfig, seed_everything, train

    torch.set_num_threads(args.threads)
    name, base_m, base_t = BEST[args.dataset]
    data = load_tsv_dataset(folder, args.dataset)
    filt = FilterIndex(data.all_triples())
    lrs = [float(x) for x in args.lr.split(",")] if args.lr else [base_t["lr"]]
    grid = [(lr, float(r)) for lr in lrs for r in args.reg.split(",")]
    t_all = time.perf_counter()
    rows, best = [], None
    for lr, reg in grid:
        topts = {**base_t, "lr": lr, "reg_weight": reg, "seed": args.seed, "threads": args.threads}
        cfg = TrainConfig.from_dict(topts)
        seed_everything(args.seed)
        mopts = dict(base_m)
        dim = mopts.pop("dim")
        model = build_model(name, data.num_entities, data.num_relations, dim, **mopts)
        t0 = time.perf_counter()
        res = train(model, data, cfg, progress=False, log=lambda s: None)
        valid = evaluate(model, data.valid, filt, batch_size=cfg.eval_batch_size)
        minutes = (time.perf_counter() - t0) / 60
        rows.append((lr, reg, valid.mrr, valid.hits10, res.epochs_run, minutes))
        print(f"lr={lr:g} reg={reg:g}: valid MRR {valid.mrr:.4f} H@10 {valid.hits10:.4f} "
              f"({res.epochs_run} epochs, {minutes:.1f} min)", flush=True)  # fmt: skip
        if best is None or valid.mrr > best[0]:
            best = (valid.mrr, lr, reg, model, cfg)
    assert best is not None
    _, lr, reg, model, cfg = best
    test = evaluate(model, data.test, filt, batch_size=cfg.eval_batch_size)
    print(f"\n{args.dataset} {name} {base_m}: chosen on validation lr={lr:g} reg={reg:g}")
    print(f"test (evaluated once, for the chosen setting only): MRR {test.mrr:.4f} H@1 {test.hits1:.4f} "
          f"H@10 {test.hits10:.4f}; published: {PUBLISHED[args.dataset]}")  # fmt: skip
    print(f"command: .venv/bin/python benchmarks/kge_select.py {' '.join(sys.argv[1:])}")
    print(f"dataset={args.dataset} chosen_lr={lr:g} chosen_reg={reg:g} valid_MRR={best[0]:.4f} "
          f"test_MRR={test.mrr:.4f} test_H@10={test.hits10:.4f} grid={len(grid)} "
          f"minutes={(time.perf_counter() - t_all) / 60:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
