"""A small LLaMA-style model (HF LlamaForCausalLM, 8 layers, 512 wide, GQA), batch 8, 512 tokens."""

import _env  # noqa: F401 - this machine's torchvision quirk, before transformers
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def build():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=8000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, use_cache=False)
    model = LlamaForCausalLM(config).train()
    model.loss_type = "ForCausalLM"
    ids = torch.randint(3, config.vocab_size, (8, 512))
    return model, {"input_ids": ids, "labels": ids}
