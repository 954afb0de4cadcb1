"""timm ResNet-50, batch 8, 224x224, random weights (train mode: BatchNorm updates its stats)."""

import _env  # noqa: F401 - this machine's torchvision quirk, before timm
import timm
import torch


def build():
    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False)
    return model.train(), (torch.randn(8, 3, 224, 224),)
