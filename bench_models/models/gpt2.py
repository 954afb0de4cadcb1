"""HF GPT-2 small (the default config: 12 layers, 768 wide), batch 4, 256 tokens, LM loss.

The config lives in bench_models/registry.py (entry ``gpt2``, size ``full``); this file lets
``recompile plan bench_models/models/gpt2.py`` plan the same model.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for bench_models

from bench_models.registry import build as _build  # noqa: E402


def build():
    return _build("gpt2", "full")
