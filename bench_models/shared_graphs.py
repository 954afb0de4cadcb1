"""The benchmark graphs of bench_models/graphs (a copy of the shared Checkmate and random-layered graphs),
by short name (the FastSA paper's Table 1 names too)."""

from __future__ import annotations

from pathlib import Path

SHARED_GRAPHS = Path(__file__).resolve().parent / "graphs"

CHECKMATE = ["vgg16", "vgg19", "vgg_unet", "fcn_8_vgg", "segnet", "mobilenet", "resnet50"]
RANDOM_LAYERED = {"RL1": "n100", "RL2": "n250", "RL3": "n500", "RL4": "n1000"}
TABLE1 = {**RANDOM_LAYERED, "CM1": "fcn_8_vgg", "CM2": "resnet50"}


def graph_path(name: str) -> Path:
    """A shared graph file by short name: ``resnet50``, ``RL1`` or ``n100``."""
    key = TABLE1.get(name, name)
    if key.startswith("n") and key[1:].isdigit():
        return next((SHARED_GRAPHS / "random_layered").glob(f"random_layered_{key}_*.json"))
    return SHARED_GRAPHS / "checkmate" / f"{key}.train.json"


def all_graph_names() -> list[str]:
    return CHECKMATE + list(RANDOM_LAYERED)
