"""This machine's set-up for the benchmark model files (import it before timm/transformers).

Why: the only torchvision matching torch 2.13 here is a CUDA build whose ``_C.so`` cannot
load beside the CPU torch, so ``import torchvision`` (and, through it, timm and transformers
model imports) fails with "operator torchvision::nms does not exist" (../shared/ENV.md).
Loading the library, or failing that defining the two op schemas, lets torchvision's Python
parts import. A quirk of this machine, kept out of the library's import path on purpose.
"""

import glob
import importlib.util
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def fix_torchvision() -> None:
    import torch

    if "torchvision" in __import__("sys").modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    libs = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    try:
        torch.ops.load_library(libs[0])
        return
    except Exception:  # noqa: BLE001 - the CUDA build cannot load here; define the schemas instead
        pass
    try:
        lib = torch.library.Library("torchvision", "FRAGMENT")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        fix_torchvision._lib = lib  # keep the fragment alive
    except RuntimeError:
        pass  # already defined


fix_torchvision()
