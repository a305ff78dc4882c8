#!/usr/bin/env python3
"""Makes the small random-weight checkpoints and the reference outputs the model tests compare against.

Run where torch and transformers are installed:
    python3 scripts/reference/make_model_refs.py OUT_DIR
Writes OUT_DIR/<name>/ (config.json, *.safetensors, generation_config.json, reference.json) per model.
The references are computed by transformers itself in float64 on the CPU from the saved weights:
last-token logits of a few prompts and 24-token greedy continuations (with the smallest top-1/top-2
logit margin seen, so a test can tell a real mismatch from a near tie).
"""
import json
import os
import sys

import torch
import transformers
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM)

PROMPT_LENGTHS = [1, 5, 37]
NUM_GREEDY_TOKENS = 24


def rope_kwargs(theta, scaling):
    """transformers 5 takes rope_parameters; 4 took rope_theta + rope_scaling."""
    params = {"rope_type": "default", "rope_theta": theta}
    if scaling:
        params.update(scaling)
    return {"rope_parameters": params}


MODELS = [
    dict(name="llama3-gqa", cls=LlamaForCausalLM, config_cls=LlamaConfig, dtype=torch.bfloat16,
         shard="60KB", dialect="v4",
         kwargs=dict(hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=6,
                     num_key_value_heads=2, head_dim=16, vocab_size=640, max_position_embeddings=1024,
                     rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=[2, 3],
                     **rope_kwargs(500000.0, dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                  high_freq_factor=4.0,
                                                  original_max_position_embeddings=128)))),
    dict(name="qwen2-bias-tied", cls=Qwen2ForCausalLM, config_cls=Qwen2Config, dtype=torch.float32,
         shard=None, dialect="v5",
         kwargs=dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=512, max_position_embeddings=512, rms_norm_eps=1e-6,
                     tie_word_embeddings=True, use_sliding_window=False, bos_token_id=None, eos_token_id=7,
                     **rope_kwargs(1000000.0, None))),
    dict(name="mistral-headdim", cls=MistralForCausalLM, config_cls=MistralConfig, dtype=torch.float16,
         shard=None, dialect="v5",
         kwargs=dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=8,
                     num_key_value_heads=2, head_dim=32, vocab_size=512, max_position_embeddings=2048,
                     rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None, bos_token_id=1,
                     eos_token_id=2, **rope_kwargs(10000.0, None))),
    dict(name="llama2-mha", cls=LlamaForCausalLM, config_cls=LlamaConfig, dtype=torch.bfloat16,
         shard=None, dialect="v4",
         kwargs=dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, vocab_size=384, max_position_embeddings=512, rms_norm_eps=1e-6,
                     tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, **rope_kwargs(10000.0, None)),
         drop_head_dim=True),
]


def to_v4_dialect(path):
    """Rewrites config.json the way transformers 4 wrote it: rope_theta + rope_scaling, no rope_parameters."""
    with open(path) as f:
        config = json.load(f)
    params = config.pop("rope_parameters")
    config["rope_theta"] = params.pop("rope_theta")
    config["rope_scaling"] = None if params.get("rope_type", "default") == "default" else params
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


def greedy(model, prompt):
    ids = list(prompt)
    margins = []
    with torch.no_grad():
        for _ in range(NUM_GREEDY_TOKENS):
            logits = model(torch.tensor([ids])).logits[0, -1]
            top = torch.topk(logits, 2)
            margins.append(float(top.values[0] - top.values[1]))
            ids.append(int(top.indices[0]))
    return ids[len(prompt):], min(margins)


def main():
    out_dir = sys.argv[1]
    torch.manual_seed(20261122)
    for spec in MODELS:
        config = spec["config_cls"](initializer_range=0.1, **spec["kwargs"])
        model = spec["cls"](config).eval()
        rope_type = getattr(model.model.rotary_emb, "rope_type", "?")
        expected = spec["kwargs"]["rope_parameters"]["rope_type"]
        assert rope_type == expected, f"{spec['name']}: rotary embedding is {rope_type}, wanted {expected}"
        with torch.no_grad():  # norms start at 1: perturb them so a loader that ignores them is caught
            for name, param in model.named_parameters():
                if "norm" in name or name.endswith(".bias"):
                    param.add_(torch.randn_like(param) * 0.1)
        path = os.path.join(out_dir, spec["name"])
        save_kwargs = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
        model.to(spec["dtype"]).save_pretrained(path, safe_serialization=True, **save_kwargs)
        model.generation_config.save_pretrained(path)
        if spec["dialect"] == "v4":
            to_v4_dialect(os.path.join(path, "config.json"))
        if spec.get("drop_head_dim"):  # older configs have no head_dim: it is hidden_size / num_attention_heads
            config_path = os.path.join(path, "config.json")
            with open(config_path) as f:
                saved = json.load(f)
            saved.pop("head_dim", None)
            with open(config_path, "w") as f:
                json.dump(saved, f, indent=2, sort_keys=True)

        reference_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).eval()
        generator = torch.Generator().manual_seed(len(spec["name"]))
        cases = []
        for length in PROMPT_LENGTHS:
            prompt = torch.randint(0, config.vocab_size, (length,), generator=generator).tolist()
            with torch.no_grad():
                logits = reference_model(torch.tensor([prompt])).logits[0, -1]
            continuation, margin = greedy(reference_model, prompt)
            cases.append({"prompt_token_ids": prompt, "last_logits": [float(x) for x in logits],
                          "greedy_token_ids": continuation, "min_greedy_margin": margin})
        reference = {"model": spec["name"], "architecture": spec["cls"].__name__,
                     "stored_dtype": str(spec["dtype"]), "config_dialect": spec["dialect"],
                     "transformers": transformers.__version__, "torch": torch.__version__,
                     "reference_dtype": "float64", "cases": cases}
        with open(os.path.join(path, "reference.json"), "w") as f:
            json.dump(reference, f)
        print(spec["name"], "rope", rope_type, "files", sorted(os.listdir(path)),
              "margins", [round(c["min_greedy_margin"], 4) for c in cases])


if __name__ == "__main__":
    main()
