"""Mid-sized models for the runtime benchmark: real architectures, small enough for this CPU."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
import _env  # noqa: E402,F401 - this machine's torchvision quirk, before transformers/timm

import torch  # noqa: E402


def gpt2_2l():
    """HF GPT-2, 2 layers × 768, batch 4 × 256 tokens, LM loss."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, use_cache=False, vocab_size=4096, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).train()
    model.loss_type = "ForCausalLM"
    ids = torch.randint(0, config.vocab_size, (4, 256))
    return model, {"input_ids": ids, "labels": ids}


def resnet18():
    """timm resnet18, batch 8 of 3×128×128, random weights."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10).train()
    return model, (torch.randn(8, 3, 128, 128),)
