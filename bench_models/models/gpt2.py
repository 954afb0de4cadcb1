"""HF GPT-2 small (the default config: 12 layers, 768 wide), batch 4, 256 tokens, LM loss."""

import _env  # noqa: F401 - this machine's torchvision quirk, before transformers
import torch
from transformers import GPT2Config, GPT2LMHeadModel


def build():
    torch.manual_seed(0)
    config = GPT2Config(use_cache=False)
    model = GPT2LMHeadModel(config).train()
    model.loss_type = "ForCausalLM"  # avoids a dynamo graph break on the warning for None
    ids = torch.randint(0, config.vocab_size, (4, 256))
    return model, {"input_ids": ids, "labels": ids}
