#!/usr/bin/env python3
"""Makes realistic-shape checkpoints and their transformers float32 logits for the CUDA backend test.

Too big to commit (about 3 GB), so this runs on the GPU machine right before the test:
    python3 scripts/reference/make_realistic_refs.py OUT_DIR
    NANOFLOW_REALISTIC_REFS=OUT_DIR build/tests/engine/test_cuda_backend
Writes OUT_DIR/<name>/ (config.json, *.safetensors, reference.json) for:
  llama3-8b-width-4l: 4 layers of Llama-3-8B (hidden 4096, intermediate 14336, 32/8 heads, head_dim 128,
                      llama3 RoPE scaling), vocabulary cut to 8192;
  qwen2-7b-width-2l:  2 layers of Qwen2-7B (hidden 3584, intermediate 18944, 28/4 heads, QKV bias),
                      vocabulary cut to 8192.
Weights are random (transformers' own initialisation, norms and biases perturbed), stored as bf16. The
reference is transformers in float32 (TF32 off) from the saved checkpoint: for a few random prompts
followed by a few extra tokens, the logits at the last prompt position and at every extra position.
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

PROMPT_LENGTHS = [200, 77, 33]
NUM_EXTRA_TOKENS = 4
VOCAB = 8192

MODELS = [
    dict(name="llama3-8b-width-4l", cls=LlamaForCausalLM, config_cls=LlamaConfig,
         kwargs=dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=4, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, vocab_size=VOCAB, max_position_embeddings=8192,
                     rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                     rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                                          high_freq_factor=4.0, original_max_position_embeddings=8192))),
    dict(name="qwen2-7b-width-2l", cls=Qwen2ForCausalLM, config_cls=Qwen2Config,
         kwargs=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=2, num_attention_heads=28,
                     num_key_value_heads=4, vocab_size=VOCAB, max_position_embeddings=32768, rms_norm_eps=1e-6,
                     tie_word_embeddings=False, use_sliding_window=False, bos_token_id=1, eos_token_id=2,
                     rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
]


def main():
    out_dir = sys.argv[1]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(20261123)
    for spec in MODELS:
        config = spec["config_cls"](**spec["kwargs"])
        with torch.device(device):
            model = spec["cls"](config).eval()
        with torch.no_grad():  # norms start at 1 and biases at 0: perturb them so a loader that ignores them is caught
            for name, param in model.named_parameters():
                if "norm" in name or name.endswith(".bias"):
                    param.add_(torch.randn_like(param) * 0.1)
        path = os.path.join(out_dir, spec["name"])
        model.to(torch.bfloat16).save_pretrained(path, safe_serialization=True)
        del model
        reference_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                               attn_implementation="eager").to(device).eval()
        generator = torch.Generator().manual_seed(len(spec["name"]))
        cases = []
        for length in PROMPT_LENGTHS:
            ids = torch.randint(0, VOCAB, (length + NUM_EXTRA_TOKENS,), generator=generator).tolist()
            with torch.no_grad():
                logits = reference_model(torch.tensor([ids], device=device)).logits[0].float().cpu()
            rows = logits[length - 1:length + NUM_EXTRA_TOKENS]
            cases.append({"prompt_token_ids": ids[:length], "extra_token_ids": ids[length:],
                          "logits": [[float(x) for x in row] for row in rows]})
        reference = {"model": spec["name"], "architecture": spec["cls"].__name__, "stored_dtype": "bfloat16",
                     "transformers": transformers.__version__, "torch": torch.__version__,
                     "reference_dtype": "float32", "device": device, "cases": cases}
        with open(os.path.join(path, "reference.json"), "w") as f:
            json.dump(reference, f)
        del reference_model
        if device == "cuda":
            torch.cuda.empty_cache()
        print(spec["name"], "files", sorted(os.listdir(path)), flush=True)


if __name__ == "__main__":
    main()
