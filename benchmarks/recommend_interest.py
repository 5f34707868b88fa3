"""The LLM interest score as a ranker feature on Last.fm: build its LoRA adapter, then the ablation.

Data: ../shared/data/hetrec2011-lastfm-2k and kgcn-music-kg (non-commercial; read, never shipped).
Model: SmolLM2-135M-Instruct from ``~/.cache/kgnlp/models/smollm2-135m-instruct`` (local files only).
Everything runs on the CPU with one torch thread.

    .venv/bin/python benchmarks/recommend_interest.py train-adapter --source ../shared/data \\
        --out ~/.cache/kgnlp/adapters/recommend-interest [--max-seconds 600]
    .venv/bin/python benchmarks/recommend_interest.py ablation --source ../shared/data \\
        [--adapter ~/.cache/kgnlp/adapters/recommend-interest] [--raw] [--ctr-users 300] [--topk-users 100]

``train-adapter`` trains a LoRA (r=8 on q_proj/v_proj) on (history, candidate, label) pairs taken
only from plays that are training plays in *both* evaluation splits (the KGCN row split, seed 555,
and the per-user top-K split, seed 0): the positive is a held-out training play of the user, the
history the user's other training plays (most played first), the negative a random item the user
never played that is no labelled row of the KGCN validation/test sets. 10% of the users are kept
apart for the validation AUC of the raw score (before and after training). Writes the adapter,
``train_config.json`` and ``metrics.json``.

``ablation`` reproduces the evaluation protocols of ``apps/recommend/evaluate.py`` (same splits,
``fit_base``, ``contexts_for``, ranker fits) and adds the interest score as one extra column:

1. CTR (KGCN protocol): the validation/test rows of a random subsample of users; the logistic
   ranker is fitted on the subsample's validation rows with and without the column; test AUC/F1.
2. Top-K: the protocol's pairwise ranker gives each user's top-50 (train/valid items excluded);
   the interest score is added as ``ranker_logit + w · z(score)`` with ``w`` chosen on validation
   users (their validation items as targets); Recall@20 on test users with and without it.
3. Latency: the time to score one user's 50 candidates (what one /recommend request would add).

Ends with one summary line of NAME=value pairs per scorer (adapter and/or raw model).

Measured (AMD EPYC, 1 torch thread, shared 2-core host; adapter: 152 steps × 4 users × 4 candidates in
620 s, 1.9 MB; validation AUC of the score 0.500 raw → 0.763 with the adapter), ablation with
``--raw --raw-ctr-only --ctr-users 300 --topk-valid-users 60 --topk-users 100``::

    AUC_base=0.8897 AUC_llm=0.8898 F1_base=0.8042 F1_llm=0.8061 AUC_llm_alone=0.7687 R@20_base=0.3883
    R@20_llm=0.3883 w=0.0 llm_ms_per_request=2679 topk_users=100 users=300 adapter=yes
    AUC_base=0.8897 AUC_llm=0.8911 F1_base=0.8042 F1_llm=0.8064 AUC_llm_alone=0.4988 R@20=not_measured
    users=300 adapter=none

The feature does not pay (no AUC/Recall gain beyond noise, ~2.7 s per request against a 13 ms
/recommend): it is not part of the served ranker.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_HISTORY = 10


def _home() -> Path:
    from kgnlp.files import default_home

    return default_home()


def _model_dir() -> Path:
    from apps.recommend.interest import DEFAULT_MODEL

    return _home() / "models" / DEFAULT_MODEL


def _load(source: Path) -> Any:
    """The Last.fm catalogue, or None (with a message) when the data is absent."""
    from apps.recommend.lastfm import load_lastfm

    if not (source / "hetrec2011-lastfm-2k").is_dir() or not (source / "kgcn-music-kg").is_dir():
        print(f"SKIP: Last.fm data not found under {source} (hetrec2011-lastfm-2k/, kgcn-music-kg/)")
        return None
    return load_lastfm(source)


def _histories(cat: Any, train_pairs: np.ndarray) -> list[list[int]]:
    """Each user's training items, most played first (play counts from the catalogue)."""
    w: dict[tuple[int, int], float] = {}
    inter = cat.interactions
    for u, i, x in zip(inter.users.tolist(), inter.items.tolist(), inter.weights.tolist(), strict=True):
        w[(u, i)] = w.get((u, i), 0.0) + x
    out: list[list[int]] = [[] for _ in range(cat.n_users)]
    for u, i in train_pairs.tolist():
        out[u].append(i)
    return [sorted(set(h), key=lambda i, u=u: (-w.get((u, i), 0.0), i)) for u, h in enumerate(out)]


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from apps.recommend.metrics import auc

    return float(auc(y, p))


# ---------------------------------------------------------------------------------------------------
# train-adapter
# ---------------------------------------------------------------------------------------------------
Group = tuple[int, list[int], list[int], list[int]]  # (user, history, candidates, labels)


def _adapter_groups(cat: Any, seed: int, per_user: int) -> tuple[list[Group], set[int]]:
    """Per user: ``(user, history, candidates, labels)`` from plays that are train in both splits.

    ``per_user`` training plays are held out of the history as positives, as many never-played
    items are the negatives. Returns the groups and the users kept apart for validation.
    """
    from apps.recommend.splits import kgcn_split, per_user_split

    ctr = kgcn_split(cat.interactions, cat.n_items, seed=555)
    topk = per_user_split(cat.interactions, seed=0)
    ctr_train = {(int(u), int(i)) for u, i, y in ctr.train.tolist() if y == 1}
    train = np.array(sorted(ctr_train & topk.train.pairs()), np.int64).reshape(-1, 2)
    held = {(int(u), int(i)) for u, i, _ in np.concatenate([ctr.valid, ctr.test]).tolist()}
    played = cat.interactions.pairs()
    hist = _histories(cat, train)
    rng = random.Random(seed)
    users = [u for u in range(cat.n_users) if len(hist[u]) >= per_user + 2]
    rng.shuffle(users)
    val_users = set(users[: max(1, len(users) // 10)])
    out: list[Group] = []
    for u in users:
        pos = rng.sample(hist[u], per_user)
        negs: list[int] = []
        while len(negs) < per_user:
            i = rng.randrange(cat.n_items)
            if (u, i) not in played and (u, i) not in held and i not in negs:
                negs.append(i)
        out.append((u, [i for i in hist[u] if i not in pos], pos + negs, [1] * per_user + [0] * per_user))
    return out, val_users


def _group_scores(model: Any, yes_no: tuple[int, int], prefix: list[int], suffixes: list[list[int]]) -> Any:
    """Log-odds for one history and several candidates (shared prefix cache), differentiable."""
    import torch

    body = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    w = model.get_output_embeddings().weight[list(yes_no)]
    res = body(input_ids=torch.tensor([prefix]), use_cache=True)
    cache = res.cache
    b, m, n = len(suffixes), max(len(x) for x in suffixes), len(prefix)
    cache.batch_repeat_interleave(b)
    ids = torch.zeros((b, m), dtype=torch.long)
    mask = torch.zeros((b, n + m), dtype=torch.long)
    mask[:, :n] = 1
    for r, x in enumerate(suffixes):
        ids[r, : len(x)] = torch.tensor(x)
        mask[r, n : n + len(x)] = 1
    pos = torch.arange(n, n + m).unsqueeze(0).expand(b, m)
    h = body(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
    hid = h.last_hidden_state[torch.arange(b), torch.tensor([len(x) - 1 for x in suffixes])]
    lg = hid @ w.T
    return lg[:, 0] - lg[:, 1]


def train_adapter(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from apps.recommend.interest import InterestScorer, item_brief, prompt_parts
    from kgnlp.cpu import cpu_key
    from kgnlp.files import atomic_write_json

    print(f"CPU: {cpu_key()} threads={args.threads}", flush=True)
    cat = _load(args.source)
    if cat is None:
        return
    model_dir = _model_dir()
    if not (model_dir / "config.json").is_file():
        print(f"SKIP: no model at {model_dir}")
        return
    t_all = time.perf_counter()
    groups, val_users = _adapter_groups(cat, args.seed, args.per_user)
    brief = [item_brief(cat, i) for i in range(cat.n_items)]
    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    yes_no = InterestScorer.answer_ids(tok)

    def encode(g: Group) -> tuple[list[int], list[list[int]]]:
        h = [brief[i] for i in g[1][:MAX_HISTORY]]
        prefix = prompt_parts(h, "", MAX_HISTORY)[0]
        sufs = [prompt_parts(h, brief[c], MAX_HISTORY)[1] for c in g[2]]
        enc = tok.encode
        return enc(prefix, add_special_tokens=False), [enc(x, add_special_tokens=False) for x in sufs]

    rng = random.Random(args.seed)
    train_g = [g for g in groups if g[0] not in val_users]
    val_g = [g for g in groups if g[0] in val_users][: args.val_users]
    rng.shuffle(train_g)
    print(f"groups: {len(train_g)} training users, {len(val_g)} validation users "
          f"({2 * args.per_user} candidates each)", flush=True)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)

    def val_auc(m: Any) -> float:
        m.eval()
        ys: list[int] = []
        ps: list[float] = []
        with torch.inference_mode():
            for g in val_g:
                ps += _group_scores(m, yes_no, *encode(g)).tolist()
                ys += g[3]
        return _auc(np.array(ys), np.array(ps))

    t0 = time.perf_counter()
    auc_before = val_auc(model)
    print(f"validation AUC of the raw model's score: {auc_before:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    lcfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    losses: list[float] = []
    t_train = time.perf_counter()
    step = 0
    k = 0
    for step in range(1, args.steps + 1):
        lr = args.lr * min(1.0, step / 10) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        tot = 0.0
        for _ in range(args.users_per_step):
            grp = train_g[k % len(train_g)]
            k += 1
            y = torch.tensor(grp[3], dtype=torch.float32)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(_group_scores(model, yes_no, *encode(grp)), y)
            (loss / args.users_per_step).backward()
            tot += float(loss.detach()) / args.users_per_step
        opt.step()
        losses.append(tot)
        el = time.perf_counter() - t_train
        if step % 10 == 0 or step == 1:
            print(f"step {step}: loss(avg10)={np.mean(losses[-10:]):.4f} lr={lr:.2e} {el:.0f}s", flush=True)
        if el > args.max_seconds:
            print(f"stopping at step {step}: --max-seconds {args.max_seconds} reached")
            break
    train_s = time.perf_counter() - t_train
    t0 = time.perf_counter()
    auc_after = val_auc(model)
    print(f"validation AUC after training: {auc_after:.4f} ({time.perf_counter() - t0:.0f}s)")
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    cfg = {"model": model_dir.name, "source": "lastfm (train plays of both splits)", "r": 8, "lora_alpha": 16,
           "target_modules": ["q_proj", "v_proj"], "steps_requested": args.steps, "steps_done": step,
           "users_per_step": args.users_per_step, "per_user": args.per_user, "lr": args.lr, "seed": args.seed,
           "threads": args.threads, "max_history": MAX_HISTORY, "max_seconds": args.max_seconds,
           "train_users_seen": k, "train_users": len(train_g), "val_users": len(val_g), "cpu": cpu_key()}  # fmt: skip
    metrics = {"train_loss_first10": float(np.mean(losses[:10])), "train_loss_last10": float(np.mean(losses[-10:])),
               "val_auc_raw_model": round(auc_before, 4), "val_auc_adapter": round(auc_after, 4),
               "train_s": round(train_s, 1), "total_s": round(time.perf_counter() - t_all, 1),
               "adapter_bytes": size}  # fmt: skip
    atomic_write_json(out / "train_config.json", cfg)
    atomic_write_json(out / "metrics.json", metrics)
    print(json.dumps(metrics))
    print(f"adapter written to {out} ({size / 1e6:.2f} MB)")
    print(" ".join(f"{k}={v}" for k, v in metrics.items()) + f" steps={step}")


# ---------------------------------------------------------------------------------------------------
# ablation
# ---------------------------------------------------------------------------------------------------
def _score_rows(scorer: Any, hist_text: list[list[str]], brief: list[str], users: np.ndarray,
                items: np.ndarray) -> tuple[np.ndarray, list[float]]:  # fmt: skip
    """Interest scores for ``(user, item)`` rows, one scorer call per user; returns (scores, ms per call)."""
    out = np.zeros(len(users), np.float32)
    ms: list[float] = []
    for u in np.unique(users):
        rows = np.flatnonzero(users == u)
        t0 = time.perf_counter()
        out[rows] = scorer.score([hist_text[u]] * len(rows), [brief[int(i)] for i in items[rows]])
        ms.append((time.perf_counter() - t0) * 1000)
    return out, ms


def _recall(lists: np.ndarray, relevant: list[set[int]], k: int) -> float:
    from apps.recommend.metrics import rank_metrics

    return float(rank_metrics(lists[:, :k], relevant, k)["recall"])


def ablation(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from apps.recommend.evaluate import topk_lists
    from apps.recommend.interest import InterestScorer, item_brief
    from apps.recommend.metrics import f1
    from apps.recommend.models.text import encode_items
    from apps.recommend.ranker import LogisticRanker
    from apps.recommend.recommender import FEATURES
    from apps.recommend.splits import kgcn_split, per_user_split
    from apps.recommend.train import FitConfig, contexts_for, fit_base, fit_ranker_topk, labeled_features
    from kgnlp.cpu import cpu_key
    from models.loading import load_sentence_embedder

    print(f"CPU: {cpu_key()} threads={args.threads}", flush=True)
    cat = _load(args.source)
    if cat is None:
        return
    if not (_model_dir() / "config.json").is_file():
        print(f"SKIP: no model at {_model_dir()}")
        return
    arms: list[tuple[str, Path | None]] = []
    if args.adapter is not None:
        if (Path(args.adapter).expanduser() / "adapter_config.json").is_file():
            arms.append(("adapter", Path(args.adapter).expanduser()))
        else:
            print(f"no adapter at {args.adapter}: build it with `train-adapter` (the adapter arm is skipped)")
    if args.raw:
        arms.append(("none", None))
    if not arms:
        print("SKIP: nothing to compare (no adapter, no --raw)")
        return
    t_all = time.perf_counter()
    home = _home()
    embedder = load_sentence_embedder(home / "models" / "all-minilm-l6-v2")
    text = encode_items([cat.item_text(i) for i in range(cat.n_items)], embedder, home / "recommend" / "cache")
    cfg = FitConfig().scaled(args.epochs_scale)
    brief = [item_brief(cat, i) for i in range(cat.n_items)]
    rng = np.random.default_rng(args.seed)
    results: dict[str, dict[str, Any]] = {name: {} for name, _ in arms}
    scorers = {name: InterestScorer(_model_dir(), ad, MAX_HISTORY, args.batch_size) for name, ad in arms}

    # -- 1. CTR: KGCN protocol, subsample of users ----------------------------------------------------
    print("\n== CTR (KGCN protocol), subsample ==", flush=True)
    split = kgcn_split(cat.interactions, cat.n_items, seed=555)
    train = split.train_positives()
    t0 = time.perf_counter()
    rec = fit_base(cat, train, text, cfg, print)
    ctxs = contexts_for(rec, train)
    print(f"base models: {time.perf_counter() - t0:.0f}s", flush=True)
    full_ranker = LogisticRanker.fit(FEATURES, labeled_features(rec, ctxs, split.valid), split.valid[:, 2])
    hist = _histories(cat, np.stack([train.users, train.items], 1))
    hist_text = [[brief[i] for i in h[:MAX_HISTORY]] for h in hist]
    users = np.unique(np.concatenate([split.valid[:, 0], split.test[:, 0]]))
    sub = set(rng.choice(users, size=min(args.ctr_users, len(users)), replace=False).tolist())
    valid = split.valid[np.isin(split.valid[:, 0], list(sub))]
    test = split.test[np.isin(split.test[:, 0], list(sub))]
    xv, xt = labeled_features(rec, ctxs, valid), labeled_features(rec, ctxs, test)
    yv, yt = valid[:, 2], test[:, 2]
    print(f"users {len(sub)}: {len(valid)} validation rows, {len(test)} test rows")
    p_full = full_ranker.proba(xt)
    base = LogisticRanker.fit(FEATURES, xv, yv)
    pb = base.proba(xt)
    ctr_base = {"auc": _auc(yt, pb), "f1": float(f1(yt, pb >= 0.5))}
    print(f"ranker fitted on all validation rows, on the subsample's test rows: AUC={_auc(yt, p_full):.4f} "
          f"F1={f1(yt, p_full >= 0.5):.4f}")  # fmt: skip
    print(f"base ranker (subsample validation rows): AUC={ctr_base['auc']:.4f} F1={ctr_base['f1']:.4f}")
    rows = np.concatenate([valid, test])
    for name, scorer in scorers.items():
        t0 = time.perf_counter()
        s, _ = _score_rows(scorer, hist_text, brief, rows[:, 0], rows[:, 1])
        sv, st = s[: len(valid)], s[len(valid) :]
        el = time.perf_counter() - t0
        llm = LogisticRanker.fit([*FEATURES, "llm_interest"], np.c_[xv, sv], yv)
        pl = llm.proba(np.c_[xt, st])
        r = {"auc_base": ctr_base["auc"], "f1_base": ctr_base["f1"], "auc_llm": _auc(yt, pl),
             "f1_llm": float(f1(yt, pl >= 0.5)), "auc_llm_alone": _auc(yt, st), "auc_llm_alone_valid": _auc(yv, sv),
             "llm_weight": float(llm.weights[-1]), "score_s": round(el, 1), "pairs": len(rows)}  # fmt: skip
        results[name]["ctr"] = r
        print(f"[{name}] interest alone: valid AUC={r['auc_llm_alone_valid']:.4f} test AUC={r['auc_llm_alone']:.4f}; "
              f"ranker+interest: AUC={r['auc_llm']:.4f} F1={r['f1_llm']:.4f} (weight {r['llm_weight']:.3f}); "
              f"{len(rows)} pairs in {el:.0f}s", flush=True)  # fmt: skip
    del rec, ctxs

    # -- 2. Top-K: rerank the ranker's top-50 ---------------------------------------------------------
    print("\n== Top-K (per-user leave-out), rerank of the ranker's top-50 ==", flush=True)
    tsplit = per_user_split(cat.interactions, seed=0)
    t0 = time.perf_counter()
    rec = fit_base(cat, tsplit.train, text, cfg, print)
    ctxs = contexts_for(rec, tsplit.train)
    fit_ranker_topk(rec, ctxs, tsplit.valid, seed=0)
    print(f"base models + ranker: {time.perf_counter() - t0:.0f}s", flush=True)
    nu = cat.n_users
    train_h, valid_h, test_h = (x.by_user(nu) for x in (tsplit.train, tsplit.valid, tsplit.test))
    hist = _histories(cat, np.stack([tsplit.train.users, tsplit.train.items], 1))
    hist_text = [[brief[i] for i in h[:MAX_HISTORY]] for h in hist]
    vusers = [u for u in range(nu) if len(valid_h[u])]
    tusers = [u for u in range(nu) if len(test_h[u])]
    vusers = sorted(rng.choice(vusers, size=min(args.topk_valid_users, len(vusers)), replace=False).tolist())
    tusers = sorted(rng.choice(tusers, size=min(args.topk_users, len(tusers)), replace=False).tolist())
    n_c = args.candidates
    ex_v = [set(train_h[u].tolist()) for u in range(nu)]
    ex_t = [set(train_h[u].tolist()) | set(valid_h[u].tolist()) for u in range(nu)]
    cand_v = topk_lists(rec, ctxs, "ranker", vusers, ex_v, n_c)
    cand_t = topk_lists(rec, ctxs, "ranker", tusers, ex_t, n_c)
    rel_v = [set(valid_h[u].tolist()) for u in vusers]
    rel_t = [set(test_h[u].tolist()) for u in tusers]
    lg_v = np.stack([rec.model_scores("ranker", [ctxs[u]])[0][c] for u, c in zip(vusers, cand_v, strict=True)])
    lg_t = np.stack([rec.model_scores("ranker", [ctxs[u]])[0][c] for u, c in zip(tusers, cand_t, strict=True)])
    r20_base_v, r20_base_t = _recall(cand_v, rel_v, 20), _recall(cand_t, rel_t, 20)
    print(f"validation users {len(vusers)}, test users {len(tusers)}; ranker R@20: valid {r20_base_v:.4f}, "
          f"test {r20_base_t:.4f}; R@{n_c} (rerank ceiling) test {_recall(cand_t, rel_t, n_c):.4f}")  # fmt: skip
    grid = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]

    def rerank(cand: np.ndarray, lg: np.ndarray, s: np.ndarray, w: float) -> np.ndarray:
        z = (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-6)
        zl = (lg - lg.mean(1, keepdims=True)) / (lg.std(1, keepdims=True) + 1e-6)
        order = np.argsort(-(zl + w * z), axis=1, kind="stable")
        return np.take_along_axis(cand, order, 1)

    for name, scorer in scorers.items():
        if name == "none" and args.raw_ctr_only:
            continue
        t0 = time.perf_counter()
        sv = np.stack(
            [scorer.score([hist_text[u]] * n_c, [brief[i] for i in c]) for u, c in zip(vusers, cand_v, strict=True)]
        )
        ms: list[float] = []
        st_rows = []
        for u, c in zip(tusers, cand_t, strict=True):
            t1 = time.perf_counter()
            st_rows.append(scorer.score([hist_text[u]] * n_c, [brief[i] for i in c]))
            ms.append((time.perf_counter() - t1) * 1000)
        st = np.stack(st_rows)
        el = time.perf_counter() - t0
        by_w = {w: _recall(rerank(cand_v, lg_v, sv, w), rel_v, 20) for w in grid}
        w_best = max(grid, key=lambda w: (by_w[w], -w))
        r20_llm_t = _recall(rerank(cand_t, lg_t, st, w_best), rel_t, 20)
        alone_t = _recall(rerank(cand_t, lg_t * 0, st, 1.0), rel_t, 20)
        r = {"r20_base": r20_base_t, "r20_llm": r20_llm_t, "w": w_best, "r20_valid_by_w": by_w,
             "r20_llm_alone_rerank": alone_t, "ms_per_request_p50": statistics.median(ms),
             "ms_per_request_p95": float(np.percentile(ms, 95)), "score_s": round(el, 1)}  # fmt: skip
        results[name]["topk"] = r
        print(f"[{name}] validation R@20 by weight: {json.dumps({k: round(v, 4) for k, v in by_w.items()})}")
        print(f"[{name}] chosen w={w_best}: test R@20 {r20_base_t:.4f} -> {r20_llm_t:.4f} "
              f"(interest alone over the top-{n_c}: {alone_t:.4f}); scoring {n_c} candidates: "
              f"p50 {r['ms_per_request_p50']:.0f} ms, p95 {r['ms_per_request_p95']:.0f} ms per user "
              f"({len(ms)} users); {el:.0f}s", flush=True)  # fmt: skip
    total = time.perf_counter() - t_all
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "total_s": total, "cpu": cpu_key()}, indent=2))
    print(f"\ntotal {total:.0f}s")
    for name, r in results.items():
        c = r["ctr"]
        line = (
            f"AUC_base={c['auc_base']:.4f} AUC_llm={c['auc_llm']:.4f} F1_base={c['f1_base']:.4f} "
            f"F1_llm={c['f1_llm']:.4f} AUC_llm_alone={c['auc_llm_alone']:.4f} "
        )
        if "topk" in r:
            t = r["topk"]
            line += (
                f"R@20_base={t['r20_base']:.4f} R@20_llm={t['r20_llm']:.4f} w={t['w']} "
                f"llm_ms_per_request={t['ms_per_request_p50']:.0f} topk_users={len(tusers)} "
            )
        else:
            line += "R@20=not_measured "
        print(line + f"users={len(sub)} adapter={'yes' if name == 'adapter' else 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    default_adapter = Path("~/.cache/kgnlp/adapters/recommend-interest")
    tr = sub.add_parser("train-adapter", help="train the LoRA adapter on Last.fm training plays")
    tr.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    tr.add_argument("--out", type=Path, default=default_adapter)
    tr.add_argument("--steps", type=int, default=300)
    tr.add_argument("--users-per-step", type=int, default=4, help="users (one shared history each) per step")
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--per-user", type=int, default=2, help="positives (and as many negatives) per user")
    tr.add_argument("--val-users", type=int, default=60)
    tr.add_argument("--max-seconds", type=float, default=600.0, help="stop training after this long")
    tr.add_argument("--threads", type=int, default=1)
    tr.add_argument("--seed", type=int, default=0)
    ab = sub.add_parser("ablation", help="ranker with and without the interest score")
    ab.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data")
    ab.add_argument("--adapter", type=Path, default=default_adapter, help="adapter folder ('' for none)")
    ab.add_argument("--raw", action="store_true", help="also (or only) the model without adapter")
    ab.add_argument("--raw-ctr-only", action="store_true", help="score the raw model in the CTR part only")
    ab.add_argument("--no-adapter", action="store_true", help="leave the adapter arm out")
    ab.add_argument("--ctr-users", type=int, default=300)
    ab.add_argument("--topk-users", type=int, default=100, help="test users whose top-50 is reranked")
    ab.add_argument("--topk-valid-users", type=int, default=80, help="validation users that choose the weight")
    ab.add_argument("--candidates", type=int, default=50)
    ab.add_argument("--batch-size", type=int, default=25)
    ab.add_argument("--epochs-scale", type=float, default=1.0)
    ab.add_argument("--threads", type=int, default=1)
    ab.add_argument("--seed", type=int, default=0)
    ab.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.cmd == "train-adapter":
        train_adapter(args)
    else:
        if args.no_adapter:
            args.adapter = None
        ablation(args)


if __name__ == "__main__":
    main()
