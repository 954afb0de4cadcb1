"""timm ConvNeXt-T, batch 8, 224x224, random weights.

The config lives in bench_models/registry.py (entry ``convnext_tiny``, size ``full``); this file lets
``recompile plan bench_models/models/convnext_tiny.py`` plan the same model.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for bench_models

from bench_models.registry import build as _build  # noqa: E402


def build():
    return _build("convnext_tiny", "full")
