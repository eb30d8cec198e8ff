#!/usr/bin/env python3
"""Builds the inputs and reference GGUFs of converter/tests/null_fields.rs (see README.md here).

Tiny random-weight Hugging Face checkpoints (llama, mistral, qwen2, qwen3; one layer, hidden size
16) with a tiny SentencePiece tokenizer, and one config.json per case in which fields are null (or
missing); each case folder is converted by llama.cpp's own convert_hf_to_gguf.py, and the file it
writes is kept as reference/<case>.gguf. A case where the reference converter fails, or writes a
file llama.cpp cannot load, has no reference file; cases.json records what the reference did.

    python make.py LLAMA_CPP_SOURCE_DIR [OUT_DIR]

Needs torch, transformers, safetensors, sentencepiece and numpy (versions in README.md). Re-running
gives the same files.
"""
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors.torch import save_file

LLAMA_CPP = Path(sys.argv[1]).resolve()
OUT = Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else Path(__file__).resolve().parent

HIDDEN, HEADS, KV, HD, FF, VOCAB = 16, 2, 1, 8, 32, 80
SEED = 20261207

# Training text of the tokenizer (made up for this purpose).
TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "a tiny model with null fields in its config",
    "every field the converter reads is checked",
    "hello world, this is a test of the tokenizer",
    "numbers 0 1 2 3 4 5 6 7 8 9 and some punctuation . , ; :",
] * 20


def train_tokenizer(path: Path):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT), model_writer=buf, vocab_size=VOCAB, model_type="bpe",
        character_coverage=1.0, byte_fallback=False, num_threads=1, shuffle_input_sentence=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=True, minloglevel=2,
        normalization_rule_name="identity",
    )
    path.write_bytes(buf.getvalue())


def weights(arch: str, kv: int):
    shapes = {
        "model.embed_tokens.weight": (VOCAB, HIDDEN),
        "lm_head.weight": (VOCAB, HIDDEN),
        "model.norm.weight": (HIDDEN,),
    }
    p = "model.layers.0."
    shapes.update({
        p + "input_layernorm.weight": (HIDDEN,),
        p + "post_attention_layernorm.weight": (HIDDEN,),
        p + "self_attn.q_proj.weight": (HEADS * HD, HIDDEN),
        p + "self_attn.k_proj.weight": (kv * HD, HIDDEN),
        p + "self_attn.v_proj.weight": (kv * HD, HIDDEN),
        p + "self_attn.o_proj.weight": (HIDDEN, HEADS * HD),
        p + "mlp.gate_proj.weight": (FF, HIDDEN),
        p + "mlp.up_proj.weight": (FF, HIDDEN),
        p + "mlp.down_proj.weight": (HIDDEN, FF),
    })
    if arch == "qwen2":
        shapes.update({
            p + "self_attn.q_proj.bias": (HEADS * HD,),
            p + "self_attn.k_proj.bias": (kv * HD,),
            p + "self_attn.v_proj.bias": (kv * HD,),
        })
    if arch == "qwen3":
        shapes.update({p + "self_attn.q_norm.weight": (HD,), p + "self_attn.k_norm.weight": (HD,)})
    out = {}
    for i, (name, shape) in enumerate(sorted(shapes.items())):
        g = torch.Generator().manual_seed(SEED + i)
        t = torch.randn(shape, generator=g)
        t = 1 + 0.1 * t if "norm" in name else 0.02 * t
        out[name] = t.to(torch.bfloat16).contiguous()
    return out


CLASSES = {
    "llama": ("LlamaForCausalLM", "llama"),
    "mistral": ("MistralForCausalLM", "mistral"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2"),
    "qwen3": ("Qwen3ForCausalLM", "qwen3"),
}


def base_config(arch: str) -> dict:
    hf_arch, model_type = CLASSES[arch]
    c = {
        "architectures": [hf_arch], "model_type": model_type, "hidden_size": HIDDEN,
        "intermediate_size": FF, "num_hidden_layers": 1, "num_attention_heads": HEADS,
        "num_key_value_heads": KV, "vocab_size": VOCAB, "max_position_embeddings": 512,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "rope_scaling": None,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "dtype": "bfloat16", "transformers_version": "4.57.6",
    }
    if arch == "qwen3":
        c["head_dim"] = HD
    return c


DEL = object()  # marks a key to remove


def case(name, arch, changes=None, *, mha=False, generation_config=None):
    cfg = base_config(arch)
    for k, v in (changes or {}).items():
        if v is DEL:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    if mha:
        cfg["num_key_value_heads"] = None if cfg.get("num_key_value_heads", 0) is None else HEADS
    return {"name": name, "arch": arch, "weights": f"{arch}-mha" if mha else arch, "config": cfg,
            "generation_config": generation_config}


LINEAR2 = {"rope_type": "linear", "factor": 2.0}
CASES = [
    # llama (LlamaConfig fills head_dim = hidden_size / heads even when it is null)
    case("llama-base", "llama"),
    case("llama-head-dim-null", "llama", {"head_dim": None}),
    case("llama-sliding-window-null", "llama", {"sliding_window": None, "layer_types": None}),
    case("llama-max-position-embeddings-null", "llama", {"max_position_embeddings": None, "n_ctx": 128}),
    case("llama-rms-norm-eps-null", "llama", {"rms_norm_eps": None, "norm_eps": 1e-06}),
    case("llama-rope-theta-null", "llama", {"rope_theta": None}),
    case("llama-kv-heads-null", "llama", {"num_key_value_heads": None}, mha=True),
    case("llama-model-type-null", "llama", {"model_type": None}),
    case("llama-token-ids-null", "llama", {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}),
    case("llama-tie-word-embeddings-null", "llama", {"tie_word_embeddings": None}),
    case("llama-misc-null", "llama", {"_name_or_path": None, "dtype": None, "torch_dtype": None,
                                      "attention_bias": None, "mlp_bias": None, "layer_norm_eps": None,
                                      "partial_rotary_factor": None, "original_max_position_embeddings": None}),
    case("llama-rope-type-null-legacy-type", "llama", {"rope_scaling": {"rope_type": None, "type": "linear", "factor": 2.0}}),
    case("qwen2-rope-type-null", "qwen2", {"rope_scaling": {"rope_type": None, "factor": 2.0}}),
    case("llama-rope-factor-null", "llama", {"rope_scaling": {"rope_type": "linear", "factor": None}}),
    case("llama-rope-theta-null-in-rope-scaling", "llama", {"rope_scaling": {**LINEAR2, "rope_theta": None}}),
    case("llama-rope-parameters-null", "llama", {"rope_parameters": None, "rope_scaling": LINEAR2}),
    case("llama-yarn-nulls", "llama", {"rope_scaling": {
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
        "beta_fast": None, "beta_slow": 1.0, "attention_factor": None, "attn_factor": 1.5,
        "extrapolation_factor": None}}),
    case("llama-generation-config-nulls", "llama", generation_config={
        "bos_token_id": 1, "eos_token_id": 2, "top_k": None, "top_p": 0.9, "temperature": None,
        "penalty_repeat": None, "repetition_penalty": 1.1, "min_p": None, "transformers_version": "4.57.6"}),
    # mistral (MistralConfig keeps head_dim None: no key_length, llama.cpp uses hidden_size / heads)
    case("mistral-head-dim-null", "mistral", {"head_dim": None, "sliding_window": None}),
    case("mistral-head-dim-missing", "mistral", {"head_dim": DEL}),
    case("mistral-kv-heads-null", "mistral", {"num_key_value_heads": None}, mha=True),
    case("mistral-layer-types-null", "mistral", {"layer_types": None, "head_dim": None}),
    case("mistral-rope-type-null-legacy-type", "mistral", {"rope_scaling": {"rope_type": None, "type": "linear", "factor": 2.0}}),
    # qwen2 (no head_dim in the class: kept as given)
    case("qwen2-head-dim-null", "qwen2", {"head_dim": None, "sliding_window": None, "use_sliding_window": None,
                                          "max_window_layers": None, "layer_types": None}),
    case("qwen2-kv-heads-null", "qwen2", {"num_key_value_heads": None}, mha=True),
    case("qwen2-max-position-embeddings-null", "qwen2", {"max_position_embeddings": None}),
    # qwen3 (head_dim default 128 when missing, None when null)
    case("qwen3-head-dim-null", "qwen3", {"head_dim": None, "sliding_window": None}),
    case("qwen3-kv-heads-null", "qwen3", {"num_key_value_heads": None}, mha=True),
    case("qwen3-rope-theta-null", "qwen3", {"rope_theta": None}),
]
# Nulls the reference converter fails on, or turns into a file llama.cpp b11434 cannot load.
for arch in CLASSES:
    for field in ["num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                  "vocab_size", "text_config", "architectures"]:
        CASES.append(case(f"{arch}-{field.replace('_', '-')}-null", arch, {field: None}))
CASES.append(case("llama-rope-type-null", "llama", {"rope_scaling": {"rope_type": None, "factor": 2.0}}))
CASES.append(case("qwen3-head-dim-missing", "qwen3", {"head_dim": DEL}))
CASES.append(case("qwen2-kv-heads-missing", "qwen2", {"num_key_value_heads": DEL}))
CASES.append(case("llama-kv-heads-null-gqa-weights", "llama", {"num_key_value_heads": None}))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "weights").mkdir(exist_ok=True)
    ref_dir = OUT / "reference"
    if ref_dir.exists():
        shutil.rmtree(ref_dir)
    ref_dir.mkdir()
    train_tokenizer(OUT / "tokenizer.model")
    tokenizer_config = {
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None, "legacy": False,
    }
    (OUT / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    for arch in CLASSES:
        save_file(weights(arch, KV), OUT / "weights" / f"{arch}.safetensors", metadata={"format": "pt"})
        save_file(weights(arch, HEADS), OUT / "weights" / f"{arch}-mha.safetensors", metadata={"format": "pt"})
    results = []
    for c in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / c["name"]
            d.mkdir()
            shutil.copy(OUT / "weights" / f"{c['weights']}.safetensors", d / "model.safetensors")
            shutil.copy(OUT / "tokenizer.model", d / "tokenizer.model")
            shutil.copy(OUT / "tokenizer_config.json", d / "tokenizer_config.json")
            (d / "config.json").write_text(json.dumps(c["config"], indent=2) + "\n")
            if c["generation_config"] is not None:
                (d / "generation_config.json").write_text(json.dumps(c["generation_config"], indent=2) + "\n")
            out = Path(tmp) / "out.gguf"
            r = subprocess.run([sys.executable, str(LLAMA_CPP / "convert_hf_to_gguf.py"), str(d),
                                "--outtype", "bf16", "--outfile", str(out)], capture_output=True, text=True)
            if r.returncode == 0:
                shutil.copy(out, ref_dir / f"{c['name']}.gguf")
                outcome = f"wrote reference/{c['name']}.gguf"
            else:
                lines = [l for l in r.stderr.splitlines() if l.strip()]
                outcome = "failed: " + (lines[-1] if lines else f"exit {r.returncode}")
        print(c["name"], "->", outcome, flush=True)
        results.append({**c, "reference": outcome})
    (OUT / "cases.json").write_text(json.dumps(results, indent=1) + "\n")


main()
