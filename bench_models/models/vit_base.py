"""timm ViT-B/16 (vit_base_patch16_224), batch 8, random weights.

The config lives in bench_models/registry.py (entry ``vit_base_patch16_224``, size ``full``); this file lets
``recompile plan bench_models/models/vit_base.py`` plan the same model.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for bench_models

from bench_models.registry import build as _build  # noqa: E402


def build():
    return _build("vit_base_patch16_224", "full")
