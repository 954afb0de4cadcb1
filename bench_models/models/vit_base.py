"""timm ViT-B/16 (vit_base_patch16_224), batch 8, random weights."""

import _env  # noqa: F401 - this machine's torchvision quirk, before timm
import timm
import torch


def build():
    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", pretrained=False)
    return model.train(), (torch.randn(8, 3, 224, 224),)
