"""``python -m models.finetune_main CONFIG.yaml``: the launcher entry point (accelerate launch / torchrun)."""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run ``finetune`` on the config named in ``argv``; every process calls this."""
    from models.config import load_config
    from models.finetune import finetune

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m models.finetune_main CONFIG.yaml", file=sys.stderr)
        return 2
    try:
        finetune(load_config(Path(args[0])))
    finally:
        _end_process_group()
    return 0


def _end_process_group() -> None:
    """Tear the process group down before the interpreter does.

    Left to interpreter shutdown, gloo's worker threads can abort the process ("terminate called
    without an active exception", exit -6) after the work has finished: seen once in CI.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
