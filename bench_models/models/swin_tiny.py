"""timm Swin-T (patch 4, window 7), batch 8, 224x224, random weights.

The config lives in bench_models/registry.py (entry ``swin_tiny_patch4_window7_224``, size ``full``); this file lets
``recompile plan bench_models/models/swin_tiny.py`` plan the same model.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for bench_models

from bench_models.registry import build as _build  # noqa: E402


def build():
    return _build("swin_tiny_patch4_window7_224", "full")
