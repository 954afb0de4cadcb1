"""timm ResNet-50, batch 8, 224x224, random weights (train mode: BatchNorm updates its stats).

The config lives in bench_models/registry.py (entry ``resnet50``, size ``full``); this file lets
``recompile plan bench_models/models/resnet50.py`` plan the same model.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for bench_models

from bench_models.registry import build as _build  # noqa: E402


def build():
    return _build("resnet50", "full")
