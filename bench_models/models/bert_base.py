"""HF BERT base (uncased config), masked-LM loss, batch 4, 256 tokens.

The config lives in bench_models/registry.py (entry ``bert-base-uncased``, size ``full``); this file lets
``recompile plan bench_models/models/bert_base.py`` plan the same model.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for bench_models

from bench_models.registry import build as _build  # noqa: E402


def build():
    return _build("bert-base-uncased", "full")
