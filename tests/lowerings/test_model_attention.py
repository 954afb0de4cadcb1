"""The chunked-attention matcher on real models: HF GPT-2 / BERT / LLaMA, timm ViT, torch's encoder."""

import pytest
import torch

from bench_models.registry import _machine_setup
from recompiler.frontend.capture import capture
from recompiler.runtime.check import check_step

_machine_setup()


def _gpt2(attn="eager", L=40, **kw):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=L, use_cache=False,
                     attn_implementation=attn, bos_token_id=1, eos_token_id=2, **kw)
    model = GPT2LMHeadModel(cfg).train()
    model.loss_type = "ForCausalLM"
    ids = torch.randint(0, 64, (2, L))
    return model, {"input_ids": ids, "labels": ids}


def _bert(attn="sdpa"):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=64,
                     max_position_embeddings=40, attn_implementation=attn)
    ids = torch.randint(0, 64, (2, 40))
    return BertForMaskedLM(cfg).train(), {"input_ids": ids, "labels": ids}


def _llama(attn="eager", L=40):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=L, use_cache=False, attn_implementation=attn,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(cfg).train()
    model.loss_type = "ForCausalLM"
    ids = torch.randint(0, 64, (2, L))
    return model, {"input_ids": ids, "labels": ids}


def _vit(fused):
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                              embed_dim=32, num_heads=2, num_classes=4).train()
    for block in model.blocks:
        block.attn.fused_attn = fused
    return model, (torch.randn(2, 3, 32, 32),)


def _encoder():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
    return torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), (torch.randn(2, 24, 16),)


@pytest.mark.parametrize("build, modules", [
    (lambda: _gpt2("eager"), "transformer.h.{}.attn"),
    (lambda: _bert("sdpa"), "bert.encoder.layer.{}.attention.self"),     # SDPA math decomposition (dropout)
    (lambda: _bert("eager"), "bert.encoder.layer.{}.attention.self"),
    (lambda: _llama("eager"), "model.layers.{}.self_attn"),               # GQA: k, v repeated
    (lambda: _vit(False), "blocks.{}.attn"),
    (_encoder, "layers.{}.self_attn"),
], ids=["gpt2-eager", "bert-sdpa", "bert-eager", "llama-eager", "vit-unfused", "torch-encoder"])
def test_every_layer_attention_is_matched(build, modules):
    model, inputs = build()
    cap = capture(model, inputs)
    attention = [(inst, g) for inst, g in zip(cap.lowerings, cap.graph.variant_groups) if g.kind == "attention"]
    assert [inst.module_path for inst, _ in attention] == [modules.format(i) for i in range(2)]
    assert all(len(g.options) >= 2 for _, g in attention)
    # an LM head with its cross-entropy is the one other group (issue 13's chunked loss)
    assert all(g.kind == "loss" for g in cap.graph.variant_groups if g.kind != "attention")


@pytest.mark.parametrize("build", [lambda: _gpt2("eager", L=256, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0),
                                   lambda: _llama("eager", L=256)], ids=["gpt2", "llama"])
def test_a_tight_plan_chooses_chunked_attention_and_keeps_the_gradients(build):
    model, inputs = build()
    report = check_step(model, inputs, budget="25%", repeats=1, compiler="eager")
    assert report.reference == "eager"
    assert report.lowerings, "the solver took no chunked attention at 25%"
    assert abs(report.predicted_error) <= 0.05
    assert report.max_grad_error <= 1e-5 and report.loss_equal


@pytest.mark.parametrize("build, modules", [
    (lambda: _llama("sdpa"), "model.layers.{}.self_attn"),
    (lambda: _vit(True), "blocks.{}.attn"),
], ids=["llama-sdpa", "vit-fused"])
def test_fused_attention_kernels_are_matched(build, modules):
    model, inputs = build()
    cap = capture(model, inputs)
    assert [(i.lowering.name, i.module_path) for i in cap.lowerings if i.lowering.kind == "attention"] == [
        ("chunked-sdpa", modules.format(i)) for i in range(2)]


def test_a_cnn_model_has_no_group():
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=4).train()
    assert capture(model, (torch.randn(2, 3, 32, 32),)).graph.variant_groups == []


def test_lowerings_lower_the_reachable_peak():
    from recompiler.solvers import solve

    model, inputs = _gpt2("eager", L=256)
    on, off = capture(model, inputs), capture(model, inputs, lowerings=False)
    plan_on = solve(on.graph, "25%", "fastsa", seed=0, time_limit=5)
    plan_off = solve(off.graph, "25%", "fastsa", seed=0, time_limit=5)
    assert plan_on.baseline_peak_bytes == plan_off.baseline_peak_bytes
    assert on.graph.floor() == off.graph.floor()          # option 0 is the traced graph
    assert plan_on.peak_bytes < 0.8 * plan_off.peak_bytes
