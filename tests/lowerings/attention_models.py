"""Small attention models for the lowering tests: hand-written, masked, with dropout."""

import torch
from torch import nn


class HandAttention(nn.Module):
    """``softmax(q kᵀ · scale + mask) @ v`` written out, as research code and HF "eager" do.

    ``mask``: None, "causal-where" (where(tril, s, -inf)), "causal-fill" (masked_fill),
    "additive" (a float bias input), "padding" (masked_fill of a key-padding mask).
    """

    def __init__(self, dim=32, heads=4, mask=None, dropout=0.0, scale_first=False):
        super().__init__()
        self.heads, self.mask, self.scale_first = heads, mask, scale_first
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, bias=None):
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        scale = (C // self.heads) ** -0.5
        if self.scale_first:
            q = q * scale
            s = q @ k.transpose(-1, -2)
        else:
            s = (q @ k.transpose(-1, -2)) * scale
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        if self.mask == "causal-where":
            s = torch.where(causal, s, float("-inf"))
        elif self.mask == "causal-fill":
            s = s.masked_fill(~causal, float("-inf"))
        elif self.mask == "additive":
            s = s + bias
        elif self.mask == "padding":
            keep = torch.arange(L, device=x.device)[None, :] < torch.tensor([[L], [L // 2]], device=x.device)
            s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
        p = self.drop(torch.softmax(s, dim=-1))
        out = (p @ v).transpose(1, 2).reshape(B, L, C)
        return self.proj(out)


class Stack(nn.Module):
    def __init__(self, layers=2, **kw):
        super().__init__()
        self.layers = nn.ModuleList(HandAttention(**kw) for _ in range(layers))

    def forward(self, x, bias=None):
        for layer in self.layers:
            x = x + layer(x, bias)
        return x


def compiled_step(model, inputs, options):
    """One step compiled with the recompiler backend under ``options``:
    ``(compiled, graph record, loss, grads)``."""
    from recompiler.frontend.capture import _split_inputs, _WithLoss, default_loss
    from recompiler.runtime.backend import make_backend

    args, kwargs = _split_inputs(inputs)
    torch._dynamo.reset()
    wrapper = _WithLoss(model, default_loss)
    backend = make_backend({"compiler": "eager", **options})
    compiled = torch.compile(wrapper, backend=backend, dynamic=False)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss = compiled(args, kwargs)
    loss.backward()
    return compiled, backend.session.graphs[0], loss.detach(), [p.grad.clone() for p in model.parameters()]
