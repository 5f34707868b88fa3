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
    finetune(load_config(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
