"""Small models for the runtime tests: big enough activations that recomputation pays."""

import torch
from torch import nn


def mlp():
    torch.manual_seed(0)
    m = nn.Sequential(*[nn.Sequential(nn.Linear(128, 128), nn.Tanh()) for _ in range(6)], nn.Linear(128, 1))
    return m, (torch.randn(512, 128),)


def cnn_bn():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 16 * 16, 4))
    return m, (torch.randn(8, 3, 16, 16),)


def transformer_dropout():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
    m = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    return m, (torch.randn(4, 32, 32),)


MODELS = {"mlp": mlp, "cnn_bn": cnn_bn, "transformer_dropout": transformer_dropout}
