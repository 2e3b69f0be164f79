#!/usr/bin/env python3
"""Check Tests/Reference/reference.py against real Hugging Face transformers.

For each architecture (gpt2, llama with KV < H, llama with KV = 1) this
  1. builds random weights,
  2. writes them as a Hugging Face model directory (config.json + model.safetensors,
     written with Tests/Reference/safetensors_np.py),
  3. loads it with transformers.AutoModelForCausalLM.from_pretrained(dir, dtype=float32,
     attn_implementation="eager") and checks that every tensor was loaded,
  4. compares transformers' float32 logits with the float64 reference forward (on the same
     float32-rounded weights),
  5. converts the model to float64 and compares logits, loss and every parameter gradient
     with the reference's analytic backward; for llama once as transformers ships it and once
     with its float32 islands (RMSNorm, RoPE tables, attention softmax) patched to float64.

Run with the virtualenv made by setup.sh:
    .venv-hf/bin/python scripts/hf_check/compare_reference.py
    .venv-hf/bin/python scripts/hf_check/compare_reference.py --make-export-fixture /tmp/fx
The second form also writes, per architecture, /tmp/fx/<name>/hf (a model directory) and
/tmp/fx/<name>/logits.safetensors (tokens I32 [T], logits F32 [T, V] from the reference),
the inputs check_export.py expects.
Exits non-zero if any error exceeds its tolerance.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import types
import warnings

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # local directories only; never reach for the hub

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "Tests", "Reference"))
import reference as ref  # noqa: E402
import safetensors_np  # noqa: E402
from hf_loading import load_float32  # noqa: E402

# float32 transformers vs float64 reference (relative to the largest |logit|)
TOL_F32 = 1e-5
# float64 transformers vs float64 reference. For llama, transformers always computes the
# RoPE angles/cos/sin in float32, which limits agreement to ~1e-7.
TOL_F64 = {"gpt2": 1e-11, "llama": 1e-5}


def hf_config_dict(cfg):
    """config.json contents for a Keel config (see Tests/Reference/reference.py Config)."""
    if cfg.arch == "gpt2":
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": cfg.vocab_size,
            "n_positions": cfg.max_seq_len,
            "n_embd": cfg.d_model,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_inner": cfg.d_ff,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": cfg.norm_eps,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "tie_word_embeddings": True,
            # GPT2Config defaults both to 50256, which transformers warns about for small vocabs
            "bos_token_id": None,
            "eos_token_id": None,
            "torch_dtype": "float32",
        }
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": None,
        "eos_token_id": None,
        "torch_dtype": "float32",
    }


def write_hf_dir(cfg, params, out_dir, metadata=None):
    """Write config.json + model.safetensors (F32, Hugging Face names) into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config_dict(cfg), f, indent=2)
    tensors = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
    safetensors_np.save_file(tensors, os.path.join(out_dir, "model.safetensors"),
                             metadata={"format": "pt"} if metadata is None else metadata)


def load_hf(model_dir):
    """Load a model directory in float32 with eager attention; fail on any unloaded tensor."""
    model, info = load_float32(model_dir)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise RuntimeError(f"{model_dir}: transformers did not load the checkpoint cleanly: {bad}")
    model.eval()
    return model


def rel_errors(a, b):
    """a: tested, b: reference. -> (max|a-b|, max|a-b|/max|b|, ||a-b||/||b||)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = np.abs(a - b)
    return float(d.max()), float(d.max() / np.abs(b).max()), float(np.linalg.norm(a - b) / np.linalg.norm(b))


@contextlib.contextmanager
def llama_float64_islands_patched(model, cfg):
    """Run transformers' Llama RMSNorm, RoPE tables and eager softmax in the model dtype."""
    import torch
    from transformers.models.llama import modeling_llama as ml

    def rmsnorm(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.variance_epsilon))

    # take theta and head_dim from transformers' own parsed config, not from ours
    hf_cfg = model.config
    rp = getattr(hf_cfg, "rope_parameters", None) or {}
    theta = float(rp.get("rope_theta", getattr(hf_cfg, "rope_theta", 10000.0)))
    hd = int(getattr(hf_cfg, "head_dim", None) or hf_cfg.hidden_size // hf_cfg.num_attention_heads)

    def rope(self, x, position_ids):
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        freqs = position_ids[..., None].to(torch.float64) * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        k = ml.repeat_kv(key, module.num_key_value_groups)
        v = ml.repeat_kv(value, module.num_key_value_groups)
        w = torch.matmul(query, k.transpose(2, 3)) * scaling
        if attention_mask is not None:
            w = w + attention_mask
        w = torch.softmax(w, dim=-1)
        return torch.matmul(w, v).transpose(1, 2).contiguous(), w

    patched = []
    for m in model.modules():
        if isinstance(m, ml.LlamaRMSNorm):
            m.forward = types.MethodType(rmsnorm, m)
            patched.append(m)
        elif isinstance(m, ml.LlamaRotaryEmbedding):
            m.forward = types.MethodType(rope, m)
            patched.append(m)
    saved = ml.eager_attention_forward
    ml.eager_attention_forward = eager
    try:
        yield
    finally:
        ml.eager_attention_forward = saved
        for m in patched:
            del m.forward


CASES = [
    ("gpt2", dict(arch="gpt2", vocab_size=97, n_layer=2, n_head=4, d_model=64, d_ff=160,
                  max_seq_len=32, norm_eps=1e-5), 3, 24),
    ("llama-gqa", dict(arch="llama", vocab_size=101, n_layer=2, n_head=4, n_kv_head=2, d_model=64,
                       d_ff=144, max_seq_len=64, norm_eps=1e-5, rope_theta=500.0), 3, 32),
    ("llama-mqa", dict(arch="llama", vocab_size=89, n_layer=2, n_head=6, n_kv_head=1, d_model=48,
                       d_ff=128, max_seq_len=40, norm_eps=1e-6, rope_theta=10000.0), 2, 40),
]


def check_case(name, cfg_dict, B, T, seed, workdir, fixture_dir=None):
    import torch
    import torch.nn.functional as F

    cfg = ref.Config(cfg_dict)
    rng = np.random.default_rng(seed)
    params64 = ref.random_params(cfg, rng)
    # the reference runs on exactly the float32 values transformers sees
    params = {k: v.astype(np.float32).astype(np.float64) for k, v in params64.items()}
    tokens = rng.integers(0, cfg.vocab_size, size=(B, T + 1))

    model_dir = os.path.join(workdir, name)
    write_hf_dir(cfg, params, model_dir)
    model = load_hf(model_dir)

    loss_ref, logits_ref, grads_ref = ref.loss_and_grads(cfg, params, tokens)
    idx = torch.from_numpy(tokens[:, :-1].astype(np.int64))
    tgt = torch.from_numpy(tokens[:, 1:].astype(np.int64))

    ok = True
    # ---- float32 forward ----
    with torch.no_grad():
        logits32 = model(input_ids=idx).logits.numpy()
    mx, rmax, rnorm = rel_errors(logits32, logits_ref)
    ok32 = rmax < TOL_F32 and rnorm < TOL_F32
    print(f"[{name}] float32 transformers vs float64 reference logits {list(logits_ref.shape)}: "
          f"max|d| {mx:.3e}, max|d|/max|ref| {rmax:.3e}, ||d||/||ref|| {rnorm:.3e} "
          f"-> {'ok' if ok32 else 'FAILED'}")
    ok &= ok32

    # ---- float64 forward + backward ----
    model64 = model.to(torch.float64)
    model64.zero_grad(set_to_none=True)
    logits64 = model64(input_ids=idx).logits
    loss64 = F.cross_entropy(logits64.reshape(-1, cfg.vocab_size), tgt.reshape(-1))
    loss64.backward()
    tol = TOL_F64[cfg.arch]
    _, lrmax, _ = rel_errors(logits64.detach().numpy(), logits_ref)
    loss_rel = abs(loss64.item() - loss_ref) / abs(loss_ref)
    worst_g, worst_name = 0.0, None
    hf_params = dict(model64.named_parameters())
    if set(hf_params) != set(grads_ref):
        print(f"[{name}] parameter name sets differ: only HF {sorted(set(hf_params) - set(grads_ref))}, "
              f"only reference {sorted(set(grads_ref) - set(hf_params))}")
        ok = False
    for pname, p in hf_params.items():
        if pname not in grads_ref:
            continue
        _, _, gr = rel_errors(p.grad.numpy(), grads_ref[pname])
        if gr > worst_g:
            worst_g, worst_name = gr, pname
    ok64 = lrmax < tol and loss_rel < tol and worst_g < tol
    print(f"[{name}] float64 transformers vs reference: logits max|d|/max|ref| {lrmax:.3e}, "
          f"loss rel {loss_rel:.3e}, worst grad ||d||/||ref|| {worst_g:.3e} ({worst_name}) "
          f"-> {'ok' if ok64 else 'FAILED'}")
    ok &= ok64

    if cfg.arch == "llama":
        # transformers' Llama keeps three float32 islands even in a float64 model: RMSNorm
        # (upcasts to float32, then casts back), the RoPE angles/cos/sin (always float32) and
        # the eager-attention softmax (dtype=torch.float32). Patch those three to run in the
        # model dtype and compare again: what remains is rounding only.
        with llama_float64_islands_patched(model64, cfg):
            model64.zero_grad(set_to_none=True)
            logits64 = model64(input_ids=idx).logits
            loss64 = F.cross_entropy(logits64.reshape(-1, cfg.vocab_size), tgt.reshape(-1))
            loss64.backward()
        _, lrmax, _ = rel_errors(logits64.detach().numpy(), logits_ref)
        loss_rel = abs(loss64.item() - loss_ref) / abs(loss_ref)
        worst_g = max(rel_errors(p.grad.numpy(), grads_ref[n])[2] for n, p in model64.named_parameters())
        tol_full = TOL_F64["gpt2"]
        okr = lrmax < tol_full and loss_rel < tol_full and worst_g < tol_full
        print(f"[{name}] float64 transformers, float32 islands patched to float64, vs reference: "
              f"logits max|d|/max|ref| {lrmax:.3e}, loss rel {loss_rel:.3e}, "
              f"worst grad ||d||/||ref|| {worst_g:.3e} -> {'ok' if okr else 'FAILED'}")
        ok &= okr

    if fixture_dir is not None:
        fx = os.path.join(fixture_dir, name)
        write_hf_dir(cfg, params, os.path.join(fx, "hf"))
        seq = tokens[0, :-1].astype(np.int32)                       # [T]
        safetensors_np.save_file({"tokens": seq, "logits": logits_ref[0].astype(np.float32)},
                                 os.path.join(fx, "logits.safetensors"))
        print(f"[{name}] fixture written: {fx}/hf and {fx}/logits.safetensors")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-export-fixture", metavar="DIR",
                    help="also write DIR/<case>/hf and DIR/<case>/logits.safetensors for check_export.py")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()

    import torch
    import transformers
    torch.manual_seed(0)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    ok = True
    with tempfile.TemporaryDirectory() as work:
        for i, (name, cfg_dict, B, T) in enumerate(CASES):
            ok &= check_case(name, cfg_dict, B, T, a.seed + i, work, a.make_export_fixture)
    print("ALL OK" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
