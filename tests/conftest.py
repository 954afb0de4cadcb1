"""Test set-up shared by the whole suite."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# This machine's torchvision quirk (../shared/ENV.md): fixed here, in the test set-up,
# never in the library. The same helper serves the benchmark model files.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench_models" / "models"))
import _env  # noqa: E402,F401
