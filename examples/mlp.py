"""An 8-block MLP (a chain: the textbook case for recomputation).

    recompile plan examples/mlp.py --budget 25%
"""

import torch
from torch import nn


def build():
    torch.manual_seed(0)
    width, blocks, batch = 512, 8, 2048
    layers = []
    for _ in range(blocks):
        layers += [nn.Linear(width, width), nn.GELU()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    x = torch.randn(batch, width)
    return model, (x,)


def loss(output):
    return output.square().mean()
