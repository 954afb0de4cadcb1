"""The benchmark models, by name, in two sizes: ``ci`` (small, fast to capture) and ``full``.

Every model is built offline with random weights from a config written here (no hub,
``pretrained=False``), at the batch and sequence size its entry states, with
``torch.manual_seed(0)`` first so a size always gives the same graph. Three kinds:

* ``timm``: resnet50, vit_base_patch16_224, convnext_tiny, efficientnet_b0,
  swin_tiny_patch4_window7_224 — ``full`` is the real architecture at batch 8, 224×224;
  ``ci`` the same family cut down (fewer blocks, narrower, small images);
* ``hf``: gpt2, bert-base-uncased, t5-small, a LLaMA-style and a Mistral-style decoder —
  ``full`` is the real config (the two decoders: 8 layers, 512 wide, 8k vocabulary) at
  batch 4, 256 tokens; ``ci`` one or two layers, 64 wide, 128 tokens;
* ``shared``: the 11 graphs of bench_models/graphs (Checkmate and random layered), named
  ``graph:vgg16``, ``graph:RL1``...; already node-cost graphs: no fx graph, the same at both sizes
  (the ci suite leaves out the two largest, RL3 and RL4).

:func:`load` turns a name and size into a :class:`Loaded` (a CostGraph, plus the
:class:`~recompiler.frontend.capture.Captured` for the fx models). ``bench_models/models/*.py``
are thin model files over :func:`build` so that ``recompile plan bench_models/models/X.py``
plans the same models.

>>> sorted(SUITES)
['ci', 'full']
>>> MODELS["gpt2"].kind
'hf'
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
SIZES = ("ci", "full", "paper")


def _machine_setup() -> None:
    """This machine's torchvision quirk (bench_models/models/_env.py), before timm/transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models_dir = str(HERE / "models")
    if models_dir not in sys.path:
        sys.path.insert(0, models_dir)
    import _env  # noqa: F401


@dataclass(frozen=True)
class BenchModel:
    """One registry entry. ``sizes[size]`` states what that size is; ``builder(size)`` builds it."""

    name: str
    kind: str                       # "timm", "hf" or "shared"
    sizes: dict[str, str]
    builder: Callable[[str], tuple[Any, Any]] | None = None

    @property
    def has_fx(self) -> bool:
        """The model is captured from PyTorch (so torch-knapsack can run on its joint graph)."""
        return self.kind != "shared"


# --------------------------------------------------------------------------- timm
_TIMM = {
    # name: (ci kwargs, ci batch, ci image, full batch). The ci models are narrow and shallow, so
    # that activations (not parameters) dominate the peak at a small batch, as in real training.
    "resnet50": (dict(layers=(1, 1, 1, 1), channels=(16, 32, 64, 128)), 4, 64, 8),
    "vit_base_patch16_224": (dict(depth=2, embed_dim=64, num_heads=4, patch_size=8, img_size=64), 4, 64, 8),
    "convnext_tiny": (dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128)), 4, 64, 8),
    "efficientnet_b0": (dict(channel_multiplier=0.5, depth_multiplier=0.34), 4, 64, 8),
    "swin_tiny_patch4_window7_224": (dict(depths=(1, 1, 1, 1), embed_dim=32, num_heads=(2, 2, 4, 4), window_size=4,
                                          img_size=64), 4, 64, 8),
}


def _timm_builder(arch: str):
    ci_kwargs, ci_batch, ci_image, full_batch = _TIMM[arch]

    def build(size: str):
        _machine_setup()
        import timm
        import torch

        torch.manual_seed(0)
        if size == "ci" and arch == "efficientnet_b0":
            # efficientnet_b0() fixes its own multipliers; the generator behind it takes them.
            from timm.models.efficientnet import _gen_efficientnet

            model = _gen_efficientnet(arch, pretrained=False, **ci_kwargs)
            x = torch.randn(ci_batch, 3, ci_image, ci_image)
        elif size == "ci":
            model = timm.create_model(arch, pretrained=False, **ci_kwargs)
            x = torch.randn(ci_batch, 3, ci_image, ci_image)
        else:
            model = timm.create_model(arch, pretrained=False)
            x = torch.randn(full_batch, 3, 224, 224)
        return model.train(), (x,)

    return build


def _timm_sizes(arch: str) -> dict[str, str]:
    ci_kwargs, ci_batch, ci_image, full_batch = _TIMM[arch]
    cut = ", ".join(f"{k}={v}" for k, v in ci_kwargs.items() if k != "img_size")
    return {"ci": f"batch {ci_batch}, {ci_image}x{ci_image}" + (f", {cut}" if cut else ""),
            "full": f"batch {full_batch}, 224x224"}


# --------------------------------------------------------------------------- HF transformers
CI_TOKENS = (4, 128)     # batch, sequence
FULL_TOKENS = (4, 256)


def _tokens(vocab: int, size: str, low: int = 3):
    import torch

    batch, seq = CI_TOKENS if size == "ci" else FULL_TOKENS
    return torch.randint(low, vocab, (batch, seq))


def _small(size: str, **ci) -> dict:
    return ci if size == "ci" else {}


def _gpt2(size: str):
    _machine_setup()
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(use_cache=False, **_small(size, n_layer=2, n_embd=64, n_head=4, vocab_size=512,
                                                 n_positions=128, bos_token_id=1, eos_token_id=2))
    model = GPT2LMHeadModel(config).train()
    model.loss_type = "ForCausalLM"  # avoids a dynamo graph break on the warning for None
    ids = _tokens(config.vocab_size, size)
    return model, {"input_ids": ids, "labels": ids}


def _bert(size: str):
    _machine_setup()
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(**_small(size, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                 intermediate_size=256, vocab_size=512, max_position_embeddings=128))
    model = BertForMaskedLM(config).train()
    ids = _tokens(config.vocab_size, size)
    labels = ids.clone()
    labels[:, ::2] = -100  # a masked-LM loss over half the positions
    return model, {"input_ids": ids, "labels": labels}


def _t5(size: str):
    _machine_setup()
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    # t5-small: 6+6 layers, d_model 512, 8 heads, d_ff 2048, vocab 32128.
    base = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, use_cache=False)
    base.update(_small(size, vocab_size=512, d_model=64, d_kv=16, d_ff=128, num_layers=1, num_decoder_layers=1,
                       num_heads=4))
    model = T5ForConditionalGeneration(T5Config(**base)).train()
    ids = _tokens(base["vocab_size"], size)
    labels = _tokens(base["vocab_size"], size)
    return model, {"input_ids": ids, "labels": labels}


def _llama(size: str):
    _machine_setup()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = dict(vocab_size=8000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=4, max_position_embeddings=512)
    base.update(_small(size, vocab_size=512, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128))
    config = LlamaConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, use_cache=False, **base)
    model = LlamaForCausalLM(config).train()
    model.loss_type = "ForCausalLM"
    ids = _tokens(config.vocab_size, size)
    return model, {"input_ids": ids, "labels": ids}


def _mistral(size: str):
    _machine_setup()
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    base = dict(vocab_size=8000, hidden_size=512, intermediate_size=1792, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=2, max_position_embeddings=512, sliding_window=128)
    base.update(_small(size, vocab_size=512, hidden_size=64, intermediate_size=224, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=128, sliding_window=32))
    config = MistralConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, use_cache=False, **base)
    model = MistralForCausalLM(config).train()
    model.loss_type = "ForCausalLM"
    ids = _tokens(config.vocab_size, size)
    return model, {"input_ids": ids, "labels": ids}


# --------------------------------------------------------------------------- the FastSA paper's suite
#: The FastSA paper's model families at its sizes (vision batch 512 at 224x224; text batch 128 x 512
#: tokens with a sequence-classification head; LMs batch 8 x 2048, GPT-2 8 x 1024), built on the
#: meta device: planned only, no memory. The paper's exact per-model list (its Tables 3-5) is not
#: in this repository; these are the same kinds of models at its sizes, up to the largest it names.
PAPER_VISION = ["resnet50", "resnet152", "wide_resnet50_2", "densenet121", "efficientnet_b0", "mobilenetv3_large_100",
                "regnety_040", "convnext_tiny", "convnext_base", "vit_small_patch16_224", "vit_base_patch16_224",
                "deit_base_patch16_224", "swin_tiny_patch4_window7_224"]
PAPER_VISION_BATCH = 512
PAPER_TEXT_TOKENS = (128, 512)
PAPER_LM_TOKENS = (8, 2048)
PAPER_GPT2_TOKENS = (8, 1024)


def _meta_tokens(vocab: int, shape: tuple[int, int]):
    import torch

    with torch.device("meta"):
        return torch.empty(shape, dtype=torch.long)


def _paper_timm(arch: str):
    def build():
        _machine_setup()
        import timm
        import torch

        with torch.device("meta"):
            model = timm.create_model(arch, pretrained=False)
            x = torch.empty(PAPER_VISION_BATCH, 3, 224, 224)
        return model.train(), (x,)

    return build


def _paper_text(config_name: str, model_name: str, **config):
    def build():
        _machine_setup()
        import torch
        import transformers

        cfg = getattr(transformers, config_name)(num_labels=2, **config)
        with torch.device("meta"):
            model = getattr(transformers, model_name)(cfg).train()
            labels = torch.empty(PAPER_TEXT_TOKENS[0], dtype=torch.long)
        return model, {"input_ids": _meta_tokens(cfg.vocab_size, PAPER_TEXT_TOKENS), "labels": labels}

    return build


def _paper_lm(config_name: str, model_name: str, tokens=PAPER_LM_TOKENS, **config):
    def build():
        _machine_setup()
        import torch
        import transformers

        cfg = getattr(transformers, config_name)(use_cache=False, **config)
        with torch.device("meta"):
            model = getattr(transformers, model_name)(cfg).train()
        if hasattr(model, "loss_type"):
            model.loss_type = "ForCausalLM"  # avoids a dynamo graph break on the warning for None
        ids = _meta_tokens(cfg.vocab_size, tokens)
        return model, {"input_ids": ids, "labels": ids}

    return build


_TEXT = f"sequence classification, batch {PAPER_TEXT_TOKENS[0]} x {PAPER_TEXT_TOKENS[1]} tokens, meta device"
_LM = f"batch {PAPER_LM_TOKENS[0]} x {PAPER_LM_TOKENS[1]} tokens, meta device"
_GPT_NEO = dict(vocab_size=50257, max_position_embeddings=2048)
PAPER_MODELS: dict[str, tuple[str, Callable]] = {
    **{f"paper:{a}": (f"timm {a}, batch {PAPER_VISION_BATCH}, 224x224, meta device", _paper_timm(a))
       for a in PAPER_VISION},
    "paper:bert-base": (f"BERT base, {_TEXT}", _paper_text("BertConfig", "BertForSequenceClassification")),
    "paper:roberta-base": (f"RoBERTa base, {_TEXT}", _paper_text(
        "RobertaConfig", "RobertaForSequenceClassification", vocab_size=50265, max_position_embeddings=514,
        pad_token_id=1)),
    "paper:albert-base": (f"ALBERT base, {_TEXT}", _paper_text(
        "AlbertConfig", "AlbertForSequenceClassification", hidden_size=768, num_attention_heads=12,
        intermediate_size=3072)),
    "paper:distilbert-base": (f"DistilBERT base, {_TEXT}", _paper_text(
        "DistilBertConfig", "DistilBertForSequenceClassification")),
    "paper:gpt2": (f"GPT-2 small, batch {PAPER_GPT2_TOKENS[0]} x {PAPER_GPT2_TOKENS[1]} tokens, meta device",
                   _paper_lm("GPT2Config", "GPT2LMHeadModel", tokens=PAPER_GPT2_TOKENS)),
    "paper:gpt-neo-1.3b": (f"GPT-Neo 1.3B, {_LM}", _paper_lm(
        "GPTNeoConfig", "GPTNeoForCausalLM", hidden_size=2048, num_layers=24, num_heads=16,
        attention_types=[[["global", "local"], 12]], **_GPT_NEO)),
    "paper:gpt-neo-2.7b": (f"GPT-Neo 2.7B, {_LM}", _paper_lm(
        "GPTNeoConfig", "GPTNeoForCausalLM", hidden_size=2560, num_layers=32, num_heads=20,
        attention_types=[[["global", "local"], 16]], **_GPT_NEO)),
    "paper:bloom-1b1": (f"BLOOM 1.1B, {_LM}", _paper_lm(
        "BloomConfig", "BloomForCausalLM", vocab_size=250880, hidden_size=1536, n_layer=24, n_head=16)),
    "paper:bloom-3b": (f"BLOOM 3B, {_LM}", _paper_lm(
        "BloomConfig", "BloomForCausalLM", vocab_size=250880, hidden_size=2560, n_layer=30, n_head=32)),
    "paper:opt-1.3b": (f"OPT 1.3B, {_LM}", _paper_lm(
        "OPTConfig", "OPTForCausalLM", hidden_size=2048, ffn_dim=8192, num_hidden_layers=24, num_attention_heads=32,
        word_embed_proj_dim=2048, max_position_embeddings=2048)),
    "paper:opt-6.7b": (f"OPT 6.7B, {_LM}", _paper_lm(
        "OPTConfig", "OPTForCausalLM", hidden_size=4096, ffn_dim=16384, num_hidden_layers=32, num_attention_heads=32,
        word_embed_proj_dim=4096, max_position_embeddings=2048)),
    "paper:llama-7b": (f"LLaMA-7B (LlamaConfig() defaults), {_LM}", _paper_lm("LlamaConfig", "LlamaForCausalLM")),
}


_CI_HF = f"batch {CI_TOKENS[0]}, {CI_TOKENS[1]} tokens"
_FULL_HF = f"batch {FULL_TOKENS[0]}, {FULL_TOKENS[1]} tokens"

MODELS: dict[str, BenchModel] = {}
for _arch in _TIMM:
    MODELS[_arch] = BenchModel(_arch, "timm", _timm_sizes(_arch), _timm_builder(_arch))
MODELS.update({
    "gpt2": BenchModel("gpt2", "hf", {"ci": f"2 layers, 64 wide, vocab 512, {_CI_HF}",
                                      "full": f"GPT-2 small (12 layers, 768 wide, vocab 50257), {_FULL_HF}"}, _gpt2),
    "bert-base-uncased": BenchModel("bert-base-uncased", "hf", {
        "ci": f"2 layers, 64 wide, vocab 512, masked LM, {_CI_HF}",
        "full": f"BERT base (12 layers, 768 wide, vocab 30522), masked LM, {_FULL_HF}"}, _bert),
    "t5-small": BenchModel("t5-small", "hf", {"ci": f"1+1 layers, 64 wide, vocab 512, {_CI_HF}",
                                              "full": f"t5-small (6+6 layers, 512 wide, vocab 32128), {_FULL_HF}"}, _t5),
    "llama": BenchModel("llama", "hf", {"ci": f"2 layers, 64 wide, GQA 4/2, vocab 512, {_CI_HF}",
                                        "full": f"LLaMA-style, 8 layers, 512 wide, GQA 8/4, vocab 8000, {_FULL_HF}"},
                        _llama),
    "mistral": BenchModel("mistral", "hf", {
        "ci": f"2 layers, 64 wide, GQA 4/1, sliding window 32, vocab 512, {_CI_HF}",
        "full": f"Mistral-style, 8 layers, 512 wide, GQA 8/2, sliding window 128, vocab 8000, {_FULL_HF}"}, _mistral),
})


#: Shared graphs are named ``graph:vgg16``, ``graph:RL1``...: timm's resnet50 is a model of its own.
SHARED_PREFIX = "graph:"


def _shared_entries() -> dict[str, BenchModel]:
    from bench_models.shared_graphs import all_graph_names

    return {SHARED_PREFIX + name: BenchModel(SHARED_PREFIX + name, "shared",
                                             {"ci": "shared graph", "full": "shared graph"})
            for name in all_graph_names()}


MODELS.update(_shared_entries())
MODELS.update({name: BenchModel(name, "paper", {"paper": what}, lambda size, build=build: build())
               for name, (what, build) in PAPER_MODELS.items()})

FX_MODELS = [m for m in MODELS if MODELS[m].kind in ("timm", "hf")]
SHARED_MODELS = [m for m in MODELS if not MODELS[m].has_fx]
#: The models each suite runs by default (the shared graphs are the same at both sizes).
#: ci leaves out the two largest random layered graphs (500 and 1000 nodes: greedy-evict alone takes
#: ~10 s on them here), to keep the ci suite inside pytest at a few minutes.
SUITES: dict[str, list[str]] = {"ci": [m for m in MODELS if m not in ("graph:RL3", "graph:RL4") and m not in PAPER_MODELS],
                                "full": [m for m in MODELS if m not in PAPER_MODELS],
                                "paper": list(PAPER_MODELS)}
#: Default budgets per suite (% of the store-all peak). The ci models are small, so parameters and
#: gradients put their floor near 45-65% of the peak: 80% and 60% test both sides of it.
SUITE_BUDGETS: dict[str, list[str]] = {"ci": ["80%", "60%"], "full": ["50%", "25%"], "paper": ["50%", "25%"]}


def build(name: str, size: str = "full"):
    """``(model, example_inputs)`` of an fx model at ``size`` (a model file's ``build()``)."""
    entry = get(name)
    if entry.builder is None:
        raise ValueError(f"{name!r} is a shared node-cost graph, not a PyTorch model")
    if size not in entry.sizes:
        raise ValueError(f"{name!r} has no size {size!r}: choose one of {', '.join(entry.sizes)}")
    return entry.builder(size)


#: ``recompile bench --model-file PATH`` benches the model file at PATH under the name ``file:PATH``.
FILE_PREFIX = "file:"


def get(name: str) -> BenchModel:
    if name.startswith(FILE_PREFIX):
        return BenchModel(name, "file", {size: f"model file {name[len(FILE_PREFIX):]}" for size in SIZES})
    if name not in MODELS:
        raise KeyError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


@dataclass
class Loaded:
    """A benchmark model ready to plan: its CostGraph, and the capture for fx models (else None)."""

    name: str
    size: str
    graph: Any                 # CostGraph
    captured: Any = None       # Captured, for fx models
    load_seconds: float = 0.0


#: ``--cost``: the roofline model of the device profile, or one unit per node (the FastSA paper's).
COSTS = ("roofline", "unit")


def unit_costs(graph):
    """``graph`` with every node costing 1 — in its variant options too (the FastSA paper's unit cost)."""
    import dataclasses

    import numpy as np

    compute = np.where(graph.is_input, 0.0, 1.0)
    groups = [dataclasses.replace(vg, options=[dataclasses.replace(o, compute=[1.0] * len(vg.nodes))
                                               for o in vg.options]) for vg in graph.variant_groups]
    return dataclasses.replace(graph, compute=compute, variant_groups=groups)


def load(name: str, size: str = "ci", *, device_profile: str = "cpu", cost: str = "roofline") -> Loaded:
    """Build and capture ``name`` at ``size`` (fx models), or read its graph file (shared graphs).

    ``cost="unit"`` gives every node cost 1 (:func:`unit_costs`), as the FastSA paper did.
    """
    if cost not in COSTS:
        raise ValueError(f"unknown cost model {cost!r}: choose one of {', '.join(COSTS)}")
    loaded = _load(name, size, device_profile)
    if cost == "unit":
        loaded.graph = unit_costs(loaded.graph)
        if loaded.captured is not None:
            loaded.captured.graph = loaded.graph
    return loaded


def _load(name: str, size: str, device_profile: str) -> Loaded:
    entry = get(name)
    start = time.perf_counter()
    if entry.kind == "shared":
        from bench_models.shared_graphs import graph_path
        from recompiler.graph_io import read_graph

        graph = read_graph(graph_path(name[len(SHARED_PREFIX):]))
        graph.name = name
        return Loaded(name, size, graph, None, time.perf_counter() - start)
    from recompiler.frontend.capture import capture

    loss_fn = None
    if entry.kind == "file":
        from recompiler.frontend.modelfile import load_model_file

        spec = load_model_file(name[len(FILE_PREFIX):])
        model, inputs, loss_fn = spec.model, spec.example_inputs, spec.loss_fn
    else:
        model, inputs = build(name, size)
    cap = capture(model, inputs, loss_fn=loss_fn, device_profile=device_profile, name=f"{name}[{size}]")
    return Loaded(name, size, cap.graph, cap, time.perf_counter() - start)
