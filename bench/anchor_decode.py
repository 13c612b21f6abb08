#!/usr/bin/env python3
"""HF generate anchor for `colocate bench decode` at one of our presets' shapes, random weights.

The three configurations of ../shared/bench/anchor_hf.py run at each batch size and the best counts:
  1. bf16 weights, sampled (temperature 1, top-k off);
  2. fp32 weights under bf16 autocast, greedy;
  3. bf16 weights with the static KV cache, sampled: transformers compiles that path with
     torch.compile (CUDA graphs), its fastest; the compilation (tens of seconds per batch size on the
     first call) runs in an untimed warm-up of the same length.
Every sequence gets exactly --new tokens (min_new_tokens = max_new_tokens, so EOS never stops one early),
as `colocate bench decode` ignores EOS.

The shapes are those of Sources/Models/Presets/ModelPreset.swift (keep them in step):
  opt-125m    OPT, hidden 768, 12 layers, 12 heads, ffn 3072, vocab 50272, 2048 positions, tied embeddings
  qwen2-0.5b  Qwen2, hidden 896, 24 layers, 14 heads (2 KV heads), ffn 4864, vocab 151936, 4096 positions,
              rope theta 1e6, RMS-norm eps 1e-6, tied embeddings

Usage:
  python3 bench/anchor_decode.py --preset qwen2-0.5b --batch 1,32,256 --prompt 128 --new 128
Prints, per batch size, one line to grep:
  anchor hf-generate best preset=qwen2-0.5b batch=256 prompt=128 new=128: 12345 new tokens/s (<configuration>)
"""
import argparse
import sys
import time

import torch

PRESETS = {
    "opt-125m": dict(arch="opt", hidden=768, layers=12, heads=12, kv_heads=12, ffn=3072, vocab=50272, positions=2048),
    "qwen2-0.5b": dict(arch="qwen2", hidden=896, layers=24, heads=14, kv_heads=2, ffn=4864, vocab=151936, positions=4096,
                       theta=1_000_000.0, eps=1e-6),
}


def make_config(p):
    """A transformers config with exactly the preset's shapes."""
    if p["arch"] == "opt":
        from transformers import OPTConfig
        return OPTConfig(vocab_size=p["vocab"], hidden_size=p["hidden"], num_hidden_layers=p["layers"], ffn_dim=p["ffn"],
                         num_attention_heads=p["heads"], max_position_embeddings=p["positions"],
                         word_embed_proj_dim=p["hidden"], do_layer_norm_before=True, activation_function="relu",
                         enable_bias=True, tie_word_embeddings=True, dropout=0.0, attention_dropout=0.0,
                         bos_token_id=2, eos_token_id=2, pad_token_id=1)
    from transformers import Qwen2Config
    # transformers 5 keeps the RoPE base in `rope_parameters`; `rope_theta` is its older spelling (4.x),
    # which 5.x still reads when `rope_parameters` lacks it. Both are given so either version gets 1e6.
    return Qwen2Config(vocab_size=p["vocab"], hidden_size=p["hidden"], num_hidden_layers=p["layers"],
                       num_attention_heads=p["heads"], num_key_value_heads=p["kv_heads"], intermediate_size=p["ffn"],
                       max_position_embeddings=p["positions"], rms_norm_eps=p["eps"], hidden_act="silu",
                       tie_word_embeddings=True, use_sliding_window=False, attention_dropout=0.0,
                       rope_parameters={"rope_type": "default", "rope_theta": p["theta"]}, rope_theta=p["theta"],
                       bos_token_id=1, eos_token_id=2, pad_token_id=0)


def make_model(cfg, arch, dtype):
    """Random weights, made on the GPU (a 0.5B model initialised on the CPU takes a while)."""
    from transformers import OPTForCausalLM, Qwen2ForCausalLM
    cls = OPTForCausalLM if arch == "opt" else Qwen2ForCausalLM
    with torch.device("cuda"):
        model = cls(cfg)
    return model.to(dtype).eval()


def check_shapes(model, p):
    """Fails loudly if transformers built other shapes than the preset's (a renamed config key would);
    warns for what does not change the timing (tied embeddings, the RoPE base)."""
    n_params = sum(t.numel() for t in model.parameters())
    emb = model.get_input_embeddings().weight
    assert tuple(emb.shape) == (p["vocab"], p["hidden"]), f"embedding {tuple(emb.shape)}"
    if model.get_output_embeddings().weight.data_ptr() != emb.data_ptr():
        print("warning: the output embedding is not tied to the input one (the preset ties them); timing is unaffected", flush=True)
    assert model.config.num_hidden_layers == p["layers"]
    if p["arch"] == "qwen2":
        attn = model.model.layers[0].self_attn
        head_dim = p["hidden"] // p["heads"]
        assert tuple(attn.k_proj.weight.shape) == (p["kv_heads"] * head_dim, p["hidden"]), f"k_proj {tuple(attn.k_proj.weight.shape)}"
        assert tuple(model.model.layers[0].mlp.up_proj.weight.shape) == (p["ffn"], p["hidden"])
        theta = (getattr(model.config, "rope_parameters", None) or {}).get("rope_theta", getattr(model.config, "rope_theta", None))
        if theta != p["theta"]:
            print(f"warning: rope theta is {theta}, not the preset's {p['theta']} (timing is unaffected)", flush=True)
    return n_params


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="opt-125m")
    parser.add_argument("--batch", default="1,32,256", help="batch sizes, comma-separated")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens per sequence")
    parser.add_argument("--new", type=int, default=128, help="new tokens per sequence")
    parser.add_argument("--configs", default="sampled,autocast,static",
                        help="which configurations run: sampled (bf16), autocast (fp32 + bf16 autocast, greedy), "
                             "static (bf16, static KV cache, compiled)")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    if not batches or min(batches) < 1 or args.prompt < 1 or args.new < 1:
        sys.exit("--batch, --prompt and --new must be positive")
    wanted = set(args.configs.split(","))
    if not wanted <= {"sampled", "autocast", "static"}:
        sys.exit(f"--configs: unknown {sorted(wanted - {'sampled', 'autocast', 'static'})}")
    if not torch.cuda.is_available():
        sys.exit("anchor_decode.py needs a CUDA GPU")
    p = PRESETS[args.preset]
    if args.prompt + args.new > p["positions"]:
        sys.exit(f"prompt + new = {args.prompt + args.new} exceeds the preset's {p['positions']} positions")

    import transformers
    torch.manual_seed(0)
    cfg = make_config(p)
    bf16 = make_model(cfg, p["arch"], torch.bfloat16)
    fp32 = make_model(cfg, p["arch"], torch.float32) if "autocast" in wanted else None
    n_params = check_shapes(bf16, p)
    print(f"anchor decode: {args.preset} ({n_params / 1e6:.1f}M parameters), torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {torch.cuda.get_device_name()}, prompt {args.prompt}, new {args.new}",
          flush=True)

    # (name, model, sampled, autocast, cache implementation, --configs key)
    configs = [("bf16-weights sampled", bf16, True, False, None, "sampled"),
               ("fp32-weights bf16-autocast greedy", fp32, False, True, None, "autocast"),
               ("bf16-weights static-cache compiled sampled", bf16, True, False, "static", "static")]
    configs = [c for c in configs if c[5] in wanted]
    low, high = 3, p["vocab"] - 1   # clear of the special ids 0-2
    for B in batches:
        best, best_name = 0.0, ""
        for name, m, sample, autocast, cache, _ in configs:
            ids = torch.randint(low, high, (B, args.prompt), device="cuda")
            kw = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=sample,
                      pad_token_id=cfg.pad_token_id, attention_mask=torch.ones_like(ids))
            if sample:
                kw.update(temperature=1.0, top_k=0, top_p=1.0)
            if cache:
                kw.update(cache_implementation=cache)
            try:
                with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                    # A static cache compiles for its full length: warm up with the timed call's shape.
                    warm = kw if cache else {**kw, "max_new_tokens": 8, "min_new_tokens": 8}
                    m.generate(input_ids=ids, **warm)
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    out = m.generate(input_ids=ids, **kw)
                    torch.cuda.synchronize()
                    dt = time.perf_counter() - t
            except torch.cuda.OutOfMemoryError as e:
                print(f"  hf-generate {name} batch={B}: out of memory ({str(e).splitlines()[0]})", flush=True)
                torch.cuda.empty_cache()
                continue
            produced = out.shape[1] - args.prompt
            assert produced == args.new, f"{name}: {produced} new tokens instead of {args.new}"
            rate = B * args.new / dt
            if rate > best:
                best, best_name = rate, name
            print(f"  hf-generate {name} batch={B}: {rate:.0f} new tokens/s ({dt:.2f} s)", flush=True)
        print(f"anchor hf-generate best preset={args.preset} batch={B} prompt={args.prompt} new={args.new}: "
              f"{best:.0f} new tokens/s ({best_name})", flush=True)


if __name__ == "__main__":
    main()
