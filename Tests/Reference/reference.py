#!/usr/bin/env python3
"""Independent float64 NumPy reference of Keel's models: forward, loss and full backward.

Usage:
    python3 Tests/Reference/reference.py --config CFG.json --params P.safetensors --out OUT.safetensors
    python3 Tests/Reference/reference.py --self-test

Input safetensors: every model parameter under its Hugging Face name (F32 or F64) and
`tokens` (I32 [B, T+1]); inputs are tokens[:, :-1], targets tokens[:, 1:].
Output safetensors (all F64): `loss` [1], `logits` [B, T, V], `grad.<name>` for every
parameter (gradient of the mean cross-entropy over all B*T positions).

Architectures (see the config keys in Config below):
  gpt2  -- Hugging Face GPT2LMHeadModel math (Conv1D weights stored [in, out], tied LM head,
           LayerNorm, gelu_new = tanh-approximated GELU).
  llama -- Hugging Face LlamaForCausalLM math (nn.Linear weights stored [out, in], no biases,
           RMSNorm, rotate_half RoPE, GQA, SwiGLU MLP, untied lm_head).

Notation for shapes: B batch, T sequence length, C d_model, V vocab, H query heads,
KV key/value heads, hd head dim (= C / H), F MLP hidden width, L layers.
Only numpy and the standard library are used; every computation is float64.
"""

import argparse
import json
import math
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

F64 = np.float64


# =====================================================================================
# Configuration and parameter naming
# =====================================================================================

class Config:
    def __init__(self, d):
        self.arch = d["arch"]
        if self.arch not in ("gpt2", "llama"):
            raise ValueError(f"unknown arch {self.arch!r}")
        self.vocab_size = int(d["vocab_size"])
        self.n_layer = int(d["n_layer"])
        self.n_head = int(d["n_head"])
        self.n_kv_head = int(d.get("n_kv_head") or self.n_head) if self.arch == "llama" else self.n_head
        self.d_model = int(d["d_model"])
        self.d_ff = int(d.get("d_ff") or 4 * self.d_model)
        self.max_seq_len = int(d["max_seq_len"])
        self.norm_eps = float(d.get("norm_eps", 1e-5 if self.arch == "gpt2" else 1e-6))
        self.rope_theta = float(d.get("rope_theta", 10000.0))
        self.tie_embeddings = bool(d.get("tie_embeddings", self.arch == "gpt2"))
        if self.arch == "gpt2" and not self.tie_embeddings:
            raise ValueError("gpt2's head is always tied")
        if self.d_model % self.n_head:
            raise ValueError("d_model must be divisible by n_head")
        if self.n_head % self.n_kv_head:
            raise ValueError("n_head must be divisible by n_kv_head")
        self.head_dim = self.d_model // self.n_head
        if self.arch == "llama" and self.head_dim % 2:
            raise ValueError("llama head_dim must be even for RoPE")

    def to_dict(self):
        d = dict(arch=self.arch, vocab_size=self.vocab_size, n_layer=self.n_layer,
                 n_head=self.n_head, d_model=self.d_model, d_ff=self.d_ff,
                 max_seq_len=self.max_seq_len, norm_eps=self.norm_eps)
        if self.arch == "llama":
            d.update(n_kv_head=self.n_kv_head, rope_theta=self.rope_theta, tie_embeddings=self.tie_embeddings)
        return d


def param_shapes(cfg):
    """Ordered dict: Hugging Face parameter name -> shape."""
    V, C, F, L = cfg.vocab_size, cfg.d_model, cfg.d_ff, cfg.n_layer
    s = {}
    if cfg.arch == "gpt2":
        s["transformer.wte.weight"] = (V, C)
        s["transformer.wpe.weight"] = (cfg.max_seq_len, C)
        for i in range(L):
            p = f"transformer.h.{i}."
            s[p + "ln_1.weight"] = (C,)
            s[p + "ln_1.bias"] = (C,)
            s[p + "attn.c_attn.weight"] = (C, 3 * C)
            s[p + "attn.c_attn.bias"] = (3 * C,)
            s[p + "attn.c_proj.weight"] = (C, C)
            s[p + "attn.c_proj.bias"] = (C,)
            s[p + "ln_2.weight"] = (C,)
            s[p + "ln_2.bias"] = (C,)
            s[p + "mlp.c_fc.weight"] = (C, F)
            s[p + "mlp.c_fc.bias"] = (F,)
            s[p + "mlp.c_proj.weight"] = (F, C)
            s[p + "mlp.c_proj.bias"] = (C,)
        s["transformer.ln_f.weight"] = (C,)
        s["transformer.ln_f.bias"] = (C,)
    else:
        H, KV, hd = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        s["model.embed_tokens.weight"] = (V, C)
        for i in range(L):
            p = f"model.layers.{i}."
            s[p + "input_layernorm.weight"] = (C,)
            s[p + "self_attn.q_proj.weight"] = (H * hd, C)
            s[p + "self_attn.k_proj.weight"] = (KV * hd, C)
            s[p + "self_attn.v_proj.weight"] = (KV * hd, C)
            s[p + "self_attn.o_proj.weight"] = (C, H * hd)
            s[p + "post_attention_layernorm.weight"] = (C,)
            s[p + "mlp.gate_proj.weight"] = (F, C)
            s[p + "mlp.up_proj.weight"] = (F, C)
            s[p + "mlp.down_proj.weight"] = (C, F)
        s["model.norm.weight"] = (C,)
        if not cfg.tie_embeddings:
            s["lm_head.weight"] = (V, C)
    return s


def head_name(cfg):
    """The output projection's tensor: the token table when tied."""
    if cfg.arch == "gpt2":
        return "transformer.wte.weight"
    return "model.embed_tokens.weight" if cfg.tie_embeddings else "lm_head.weight"


def layer_prefix(cfg, i):
    return f"transformer.h.{i}." if cfg.arch == "gpt2" else f"model.layers.{i}."


def layer_params(cfg, params, i):
    """The parameters of layer i, keyed by their name with the layer prefix stripped."""
    pre = layer_prefix(cfg, i)
    return {k[len(pre):]: v for k, v in params.items() if k.startswith(pre)}


# =====================================================================================
# Primitive ops: forward returns (output, cache); backward maps d(output) -> d(inputs)
# =====================================================================================

def linear_in_out_forward(x, W, b=None):
    """y = x @ W (+ b). x [..., In], W [In, Out] (GPT-2 Conv1D layout), b [Out] -> y [..., Out]."""
    y = x @ W
    if b is not None:
        y = y + b
    return y


def linear_in_out_backward(dy, x, W, has_bias):
    """dy [..., Out], x [..., In], W [In, Out] -> dx [..., In], dW [In, Out], db [Out] or None."""
    In, Out = W.shape
    dx = dy @ W.T
    dW = x.reshape(-1, In).T @ dy.reshape(-1, Out)
    db = dy.reshape(-1, Out).sum(axis=0) if has_bias else None
    return dx, dW, db


def linear_out_in_forward(x, W):
    """y = x @ W^T. x [..., In], W [Out, In] (nn.Linear layout) -> y [..., Out]."""
    return x @ W.T


def linear_out_in_backward(dy, x, W):
    """dy [..., Out], x [..., In], W [Out, In] -> dx [..., In], dW [Out, In]."""
    Out, In = W.shape
    dx = dy @ W
    dW = dy.reshape(-1, Out).T @ x.reshape(-1, In)
    return dx, dW


def layernorm_forward(x, w, b, eps):
    """x [..., C], w [C], b [C] -> y [..., C]; biased variance."""
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)                          # [..., 1]
    xhat = xc * rstd                                         # [..., C]
    return xhat * w + b, (xhat, rstd, w)


def layernorm_backward(dy, cache):
    """dy [..., C] -> dx [..., C], dw [C], db [C]."""
    xhat, rstd, w = cache
    C = dy.shape[-1]
    dw = (dy * xhat).reshape(-1, C).sum(axis=0)
    db = dy.reshape(-1, C).sum(axis=0)
    g = dy * w                                               # d xhat
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, dw, db


def rmsnorm_forward(x, w, eps):
    """x [..., C], w [C] -> y = x / sqrt(mean(x^2) + eps) * w."""
    r = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)   # [..., 1]
    xn = x * r                                                         # [..., C]
    return xn * w, (xn, r, w)


def rmsnorm_backward(dy, cache):
    """dy [..., C] -> dx [..., C], dw [C]."""
    xn, r, w = cache
    C = dy.shape[-1]
    dw = (dy * xn).reshape(-1, C).sum(axis=0)
    g = dy * w                                                         # d xn
    dx = r * (g - xn * (g * xn).mean(axis=-1, keepdims=True))
    return dx, dw


_GELU_K = math.sqrt(2.0 / math.pi)


def gelu_tanh_forward(u):
    """gelu_new: 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))."""
    t = np.tanh(_GELU_K * (u + 0.044715 * u ** 3))
    return 0.5 * u * (1.0 + t), (u, t)


def gelu_tanh_backward(dy, cache):
    u, t = cache
    dinner = _GELU_K * (1.0 + 3.0 * 0.044715 * u * u)
    return dy * (0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * dinner)


def sigmoid(u):
    # numerically safe for both signs
    e = np.exp(-np.abs(u))
    return np.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def silu_forward(u):
    s = sigmoid(u)
    return u * s, (u, s)


def silu_backward(dy, cache):
    u, s = cache
    return dy * s * (1.0 + u * (1.0 - s))


def causal_attention_forward(q, k, v):
    """Scaled dot-product attention with a causal mask.
    q, k, v [B, H, T, hd] -> o [B, H, T, hd]; scale 1/sqrt(hd)."""
    T, hd = q.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(hd)
    s = (q @ k.swapaxes(-1, -2)) * scale                    # [B, H, T, T]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)       # key index > query index
    s = np.where(future, -np.inf, s)
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p = p / p.sum(axis=-1, keepdims=True)                    # [B, H, T, T]
    o = p @ v                                                # [B, H, T, hd]
    return o, (q, k, v, p, scale)


def causal_attention_backward(do, cache):
    """do [B, H, T, hd] -> dq, dk, dv [B, H, T, hd]."""
    q, k, v, p, scale = cache
    dv = p.swapaxes(-1, -2) @ do                             # [B, H, T, hd]
    dp = do @ v.swapaxes(-1, -2)                             # [B, H, T, T]
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))     # softmax backward (masked p = 0)
    dq = (ds @ k) * scale
    dk = (ds.swapaxes(-1, -2) @ q) * scale
    return dq, dk, dv


def split_heads(x, n):
    """[B, T, n*hd] -> [B, n, T, hd]."""
    B, T, D = x.shape
    return x.reshape(B, T, n, D // n).transpose(0, 2, 1, 3)


def merge_heads(x):
    """[B, n, T, hd] -> [B, T, n*hd]."""
    B, n, T, hd = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, n * hd)


def rope_tables(T, hd, theta):
    """cos, sin [T, hd] in the HF rotate_half layout (frequencies duplicated across halves)."""
    inv_freq = theta ** (-np.arange(0, hd, 2, dtype=F64) / hd)       # [hd/2]
    ang = np.arange(T, dtype=F64)[:, None] * inv_freq[None, :]       # [T, hd/2]
    ang = np.concatenate([ang, ang], axis=-1)                        # [T, hd]
    return np.cos(ang), np.sin(ang)


def rotate_half(x):
    """[..., hd]: (x1, x2) -> (-x2, x1)."""
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def rotate_half_transpose(g):
    """Adjoint of rotate_half: (g1, g2) -> (g2, -g1)."""
    h = g.shape[-1] // 2
    return np.concatenate([g[..., h:], -g[..., :h]], axis=-1)


def rope_forward(x, cos, sin):
    """x [B, n, T, hd], cos/sin [T, hd] -> x*cos + rotate_half(x)*sin."""
    return x * cos + rotate_half(x) * sin


def rope_backward(dy, cos, sin):
    return dy * cos + rotate_half_transpose(dy * sin)


def cross_entropy_forward(logits, targets):
    """logits [B, T, V], targets [B, T] int -> mean loss (scalar), dlogits [B, T, V]."""
    B, T, V = logits.shape
    m = logits.max(axis=-1, keepdims=True)
    z = logits - m
    lse = np.log(np.exp(z).sum(axis=-1, keepdims=True))              # [B, T, 1]
    logp = z - lse                                                    # [B, T, V]
    picked = np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    loss = -picked.mean()
    dlogits = np.exp(logp)
    np.put_along_axis(dlogits, targets[..., None],
                      np.take_along_axis(dlogits, targets[..., None], axis=-1) - 1.0, axis=-1)
    dlogits /= B * T
    return loss, dlogits


# =====================================================================================
# GPT-2 block
# =====================================================================================

def gpt2_block_forward(x, p, cfg):
    """x [B, T, C] -> [B, T, C]. p: this layer's params (prefix stripped)."""
    C, H = cfg.d_model, cfg.n_head
    c = {"x": x}
    a, c["ln1"] = layernorm_forward(x, p["ln_1.weight"], p["ln_1.bias"], cfg.norm_eps)
    c["a"] = a                                                        # [B, T, C]
    qkv = linear_in_out_forward(a, p["attn.c_attn.weight"], p["attn.c_attn.bias"])  # [B, T, 3C]
    q = split_heads(qkv[..., :C], H)                                  # [B, H, T, hd]
    k = split_heads(qkv[..., C:2 * C], H)
    v = split_heads(qkv[..., 2 * C:], H)
    o, c["att"] = causal_attention_forward(q, k, v)                   # [B, H, T, hd]
    om = merge_heads(o)                                               # [B, T, C]
    c["om"] = om
    y = linear_in_out_forward(om, p["attn.c_proj.weight"], p["attn.c_proj.bias"])
    x1 = x + y                                                        # [B, T, C]
    h, c["ln2"] = layernorm_forward(x1, p["ln_2.weight"], p["ln_2.bias"], cfg.norm_eps)
    c["h"] = h
    u = linear_in_out_forward(h, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"])          # [B, T, F]
    g, c["gelu"] = gelu_tanh_forward(u)
    c["g"] = g
    m = linear_in_out_forward(g, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])      # [B, T, C]
    return x1 + m, c


def gpt2_block_backward(dout, p, c):
    """dout [B, T, C] -> dx [B, T, C], grads (prefix-stripped names)."""
    gr = {}
    # MLP branch: x2 = x1 + c_proj(gelu(c_fc(ln_2(x1))))
    dg, gr["mlp.c_proj.weight"], gr["mlp.c_proj.bias"] = linear_in_out_backward(
        dout, c["g"], p["mlp.c_proj.weight"], True)                   # dg [B, T, F]
    du = gelu_tanh_backward(dg, c["gelu"])                            # [B, T, F]
    dh, gr["mlp.c_fc.weight"], gr["mlp.c_fc.bias"] = linear_in_out_backward(
        du, c["h"], p["mlp.c_fc.weight"], True)                       # dh [B, T, C]
    dx1_ln, gr["ln_2.weight"], gr["ln_2.bias"] = layernorm_backward(dh, c["ln2"])
    dx1 = dout + dx1_ln                                               # [B, T, C]
    # attention branch: x1 = x + c_proj(attn(c_attn(ln_1(x))))
    dom, gr["attn.c_proj.weight"], gr["attn.c_proj.bias"] = linear_in_out_backward(
        dx1, c["om"], p["attn.c_proj.weight"], True)                  # dom [B, T, C]
    H = c["att"][0].shape[1]
    do = split_heads(dom, H)                                          # [B, H, T, hd]
    dq, dk, dv = causal_attention_backward(do, c["att"])
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # [B, T, 3C]
    da, gr["attn.c_attn.weight"], gr["attn.c_attn.bias"] = linear_in_out_backward(
        dqkv, c["a"], p["attn.c_attn.weight"], True)                  # da [B, T, C]
    dx_ln, gr["ln_1.weight"], gr["ln_1.bias"] = layernorm_backward(da, c["ln1"])
    return dx1 + dx_ln, gr


# =====================================================================================
# Llama block
# =====================================================================================

def llama_block_forward(x, p, cfg, cos, sin):
    """x [B, T, C] -> [B, T, C]. cos/sin [T, hd]."""
    H, KV = cfg.n_head, cfg.n_kv_head
    rep = H // KV
    c = {}
    a, c["n1"] = rmsnorm_forward(x, p["input_layernorm.weight"], cfg.norm_eps)
    c["a"] = a                                                        # [B, T, C]
    q = split_heads(linear_out_in_forward(a, p["self_attn.q_proj.weight"]), H)    # [B, H, T, hd]
    k = split_heads(linear_out_in_forward(a, p["self_attn.k_proj.weight"]), KV)   # [B, KV, T, hd]
    v = split_heads(linear_out_in_forward(a, p["self_attn.v_proj.weight"]), KV)   # [B, KV, T, hd]
    q = rope_forward(q, cos, sin)
    k = rope_forward(k, cos, sin)
    # GQA: query head h uses kv head h // rep  (np.repeat: [k0, k0, k1, k1, ...])
    k_rep = np.repeat(k, rep, axis=1)                                 # [B, H, T, hd]
    v_rep = np.repeat(v, rep, axis=1)
    o, c["att"] = causal_attention_forward(q, k_rep, v_rep)           # [B, H, T, hd]
    om = merge_heads(o)                                               # [B, T, H*hd]
    c["om"] = om
    x1 = x + linear_out_in_forward(om, p["self_attn.o_proj.weight"])  # [B, T, C]
    h, c["n2"] = rmsnorm_forward(x1, p["post_attention_layernorm.weight"], cfg.norm_eps)
    c["h"] = h
    gate = linear_out_in_forward(h, p["mlp.gate_proj.weight"])        # [B, T, F]
    up = linear_out_in_forward(h, p["mlp.up_proj.weight"])            # [B, T, F]
    sg, c["silu"] = silu_forward(gate)
    act = sg * up                                                     # [B, T, F]
    c.update(sg=sg, up=up, act=act)
    return x1 + linear_out_in_forward(act, p["mlp.down_proj.weight"]), c


def llama_block_backward(dout, p, c, cfg, cos, sin):
    """dout [B, T, C] -> dx [B, T, C], grads (prefix-stripped names)."""
    H, KV = cfg.n_head, cfg.n_kv_head
    rep = H // KV
    gr = {}
    # MLP branch: x2 = x1 + down(silu(gate(h)) * up(h)), h = rmsnorm2(x1)
    dact, gr["mlp.down_proj.weight"] = linear_out_in_backward(dout, c["act"], p["mlp.down_proj.weight"])
    dsg = dact * c["up"]                                              # [B, T, F]
    dup = dact * c["sg"]
    dgate = silu_backward(dsg, c["silu"])
    dh_g, gr["mlp.gate_proj.weight"] = linear_out_in_backward(dgate, c["h"], p["mlp.gate_proj.weight"])
    dh_u, gr["mlp.up_proj.weight"] = linear_out_in_backward(dup, c["h"], p["mlp.up_proj.weight"])
    dx1_n, gr["post_attention_layernorm.weight"] = rmsnorm_backward(dh_g + dh_u, c["n2"])
    dx1 = dout + dx1_n                                                # [B, T, C]
    # attention branch
    dom, gr["self_attn.o_proj.weight"] = linear_out_in_backward(dx1, c["om"], p["self_attn.o_proj.weight"])
    do = split_heads(dom, H)                                          # [B, H, T, hd]
    dq, dk_rep, dv_rep = causal_attention_backward(do, c["att"])
    B, _, T, hd = dk_rep.shape
    dk = dk_rep.reshape(B, KV, rep, T, hd).sum(axis=2)                # [B, KV, T, hd]
    dv = dv_rep.reshape(B, KV, rep, T, hd).sum(axis=2)
    dq = rope_backward(dq, cos, sin)
    dk = rope_backward(dk, cos, sin)
    da_q, gr["self_attn.q_proj.weight"] = linear_out_in_backward(merge_heads(dq), c["a"], p["self_attn.q_proj.weight"])
    da_k, gr["self_attn.k_proj.weight"] = linear_out_in_backward(merge_heads(dk), c["a"], p["self_attn.k_proj.weight"])
    da_v, gr["self_attn.v_proj.weight"] = linear_out_in_backward(merge_heads(dv), c["a"], p["self_attn.v_proj.weight"])
    dx_n, gr["input_layernorm.weight"] = rmsnorm_backward(da_q + da_k + da_v, c["n1"])
    return dx1 + dx_n, gr


# =====================================================================================
# Whole model
# =====================================================================================

def model_forward(cfg, params, idx):
    """idx [B, T] int -> logits [B, T, V], cache."""
    B, T = idx.shape
    if T > cfg.max_seq_len:
        raise ValueError(f"sequence length {T} exceeds max_seq_len {cfg.max_seq_len}")
    if idx.min() < 0 or idx.max() >= cfg.vocab_size:
        raise ValueError("token id out of range")
    caches = []
    if cfg.arch == "gpt2":
        x = params["transformer.wte.weight"][idx] + params["transformer.wpe.weight"][:T]   # [B, T, C]
        for i in range(cfg.n_layer):
            x, c = gpt2_block_forward(x, layer_params(cfg, params, i), cfg)
            caches.append(c)
        xf, fc = layernorm_forward(x, params["transformer.ln_f.weight"],
                                   params["transformer.ln_f.bias"], cfg.norm_eps)
        logits = xf @ params["transformer.wte.weight"].T                                     # [B, T, V]
        rope = None
    else:
        cos, sin = rope_tables(T, cfg.head_dim, cfg.rope_theta)
        rope = (cos, sin)
        x = params["model.embed_tokens.weight"][idx]                                         # [B, T, C]
        for i in range(cfg.n_layer):
            x, c = llama_block_forward(x, layer_params(cfg, params, i), cfg, cos, sin)
            caches.append(c)
        xf, fc = rmsnorm_forward(x, params["model.norm.weight"], cfg.norm_eps)
        logits = xf @ params[head_name(cfg)].T                                               # [B, T, V]
    return logits, dict(idx=idx, layers=caches, final=fc, xf=xf, rope=rope)


def model_backward(cfg, params, cache, dlogits):
    """dlogits [B, T, V] -> dict name -> gradient (same shapes as params)."""
    grads = {name: np.zeros(shape, dtype=F64) for name, shape in param_shapes(cfg).items()}
    idx, xf = cache["idx"], cache["xf"]
    B, T = idx.shape
    V, C = cfg.vocab_size, cfg.d_model
    if cfg.arch == "gpt2":
        wte = params["transformer.wte.weight"]
        grads["transformer.wte.weight"] += dlogits.reshape(-1, V).T @ xf.reshape(-1, C)   # tied head
        dxf = dlogits @ wte                                                                  # [B, T, C]
        dx, grads["transformer.ln_f.weight"], grads["transformer.ln_f.bias"] = \
            layernorm_backward(dxf, cache["final"])
        for i in reversed(range(cfg.n_layer)):
            dx, gr = gpt2_block_backward(dx, layer_params(cfg, params, i), cache["layers"][i])
            for k, g in gr.items():
                grads[layer_prefix(cfg, i) + k] += g
        np.add.at(grads["transformer.wte.weight"], idx.reshape(-1), dx.reshape(-1, C))
        grads["transformer.wpe.weight"][:T] += dx.sum(axis=0)
    else:
        cos, sin = cache["rope"]
        grads[head_name(cfg)] += dlogits.reshape(-1, V).T @ xf.reshape(-1, C)
        dxf = dlogits @ params[head_name(cfg)]                                               # [B, T, C]
        dx, grads["model.norm.weight"] = rmsnorm_backward(dxf, cache["final"])
        for i in reversed(range(cfg.n_layer)):
            dx, gr = llama_block_backward(dx, layer_params(cfg, params, i), cache["layers"][i],
                                          cfg, cos, sin)
            for k, g in gr.items():
                grads[layer_prefix(cfg, i) + k] += g
        np.add.at(grads["model.embed_tokens.weight"], idx.reshape(-1), dx.reshape(-1, C))
    return grads


def loss_and_grads(cfg, params, tokens, need_grads=True):
    """tokens [B, T+1] int -> loss (float), logits [B, T, V], grads (or None)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    idx, targets = tokens[:, :-1], tokens[:, 1:]
    logits, cache = model_forward(cfg, params, idx)
    loss, dlogits = cross_entropy_forward(logits, targets)
    grads = model_backward(cfg, params, cache, dlogits) if need_grads else None
    return float(loss), logits, grads


def load_params(cfg, tensors):
    """Pick and check every parameter from a name->array dict; returns float64 copies."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name not in tensors:
            raise KeyError(f"missing parameter {name}")
        arr = np.asarray(tensors[name], dtype=F64)
        if arr.shape != tuple(shape):
            raise ValueError(f"{name}: shape {arr.shape}, expected {tuple(shape)}")
        params[name] = arr.copy()
    return params


def run(config_path, params_path, out_path):
    with open(config_path) as f:
        cfg = Config(json.load(f))
    tensors = safetensors_np.load_file(params_path)
    params = load_params(cfg, tensors)
    if "tokens" not in tensors:
        raise KeyError("missing tensor 'tokens'")
    tokens = tensors["tokens"]
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be [B, T+1] with T >= 1, got {tokens.shape}")
    loss, logits, grads = loss_and_grads(cfg, params, tokens)
    out = {"loss": np.array([loss], dtype=F64), "logits": logits.astype(F64)}
    for name, g in grads.items():
        out["grad." + name] = g.astype(F64)
    safetensors_np.save_file(out, out_path, metadata={"producer": "Tests/Reference/reference.py"})
    return loss


# =====================================================================================
# Self-test: analytic gradients vs finite differences
# =====================================================================================

def random_params(cfg, rng):
    """Random float64 parameters; weights O(0.3), norm weights ~1, biases small."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        is_norm = ("ln_" in name or "layernorm" in name or name == "model.norm.weight")
        if is_norm and name.endswith(".weight"):
            params[name] = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            params[name] = 0.2 * rng.standard_normal(shape)
        elif "wte" in name or "wpe" in name or "embed_tokens" in name:
            params[name] = 0.7 * rng.standard_normal(shape)
        else:
            fan_in = shape[0] if cfg.arch == "gpt2" else shape[1]
            params[name] = (1.2 / math.sqrt(fan_in)) * rng.standard_normal(shape)
    return params


def finite_difference(f, arr, index, h):
    """Fourth-order central difference of scalar f() w.r.t. arr[index] (arr modified in place,
    then restored): (8(f(+h) - f(-h)) - (f(+2h) - f(-2h))) / (12 h)."""
    x0 = arr[index]
    vals = {}
    for s in (-2, -1, 1, 2):
        arr[index] = x0 + s * h
        vals[s] = f()
    arr[index] = x0
    return (8.0 * (vals[1] - vals[-1]) - (vals[2] - vals[-2])) / (12.0 * h)


def gradcheck(cfg, B, T, seed, samples_per_param=6, h=1e-3, tol=1e-6):
    rng = np.random.default_rng(seed)
    params = random_params(cfg, rng)
    tokens = rng.integers(0, cfg.vocab_size, size=(B, T + 1))
    tokens[0, 1] = tokens[0, 0]          # repeated ids: exercises scatter-add in the embedding grad
    loss, logits, grads = loss_and_grads(cfg, params, tokens)
    assert logits.shape == (B, T, cfg.vocab_size)
    f = lambda: loss_and_grads(cfg, params, tokens, need_grads=False)[0]  # noqa: E731

    worst, worst_name, n_checked, rows = 0.0, None, 0, []
    for name, shape in param_shapes(cfg).items():
        g = grads[name]
        assert g.shape == tuple(shape), (name, g.shape, shape)
        size = int(np.prod(shape))
        flat_choices = rng.choice(size, size=min(size, samples_per_param), replace=False)
        # make sure the largest-magnitude coordinate is always checked
        flat_choices = np.unique(np.append(flat_choices, np.argmax(np.abs(g))))
        pmax = 0.0
        for fi in flat_choices:
            index = np.unravel_index(int(fi), shape)
            num = finite_difference(f, params[name], index, h)
            ana = g[index]
            denom = max(abs(ana), abs(num))
            # coordinates whose true gradient is exactly zero (e.g. unused wpe rows)
            err = abs(ana - num) / denom if denom > 1e-11 else abs(ana - num)
            pmax = max(pmax, err)
            n_checked += 1
        rows.append((name, pmax, float(np.abs(g).max())))
        if pmax > worst:
            worst, worst_name = pmax, name
    return dict(loss=loss, worst=worst, worst_name=worst_name, n_checked=n_checked,
                rows=rows, ok=worst < tol)


def self_test(verbose=False):
    ok = True
    # --- safetensors round trip ---
    rng = np.random.default_rng(0)
    t = {"a": rng.standard_normal((3, 4)).astype(np.float32),
         "b": rng.integers(-5, 5, size=(2, 3, 1)).astype(np.int32),
         "c": rng.standard_normal((5,)),
         "d": np.zeros((0, 2), dtype=np.float32)}
    raw = safetensors_np.dump_bytes(t, metadata={"k": "v"})
    n = int.from_bytes(raw[:8], "little")
    back, meta = safetensors_np.load_bytes(raw, with_metadata=True)
    st_ok = (n % 8 == 0 and meta == {"k": "v"} and set(back) == set(t)
             and all(back[k].dtype == t[k].dtype and np.array_equal(back[k], t[k]) for k in t))
    print(f"safetensors round trip: {'ok' if st_ok else 'FAILED'}")
    ok &= st_ok

    # --- finite-difference gradient checks ---
    cases = [
        ("gpt2   L2 H2 C8 F12 V11", Config(dict(arch="gpt2", vocab_size=11, n_layer=2, n_head=2,
                                                 d_model=8, d_ff=12, max_seq_len=7, norm_eps=1e-5)), 2, 5),
        ("llama  L2 H4 KV2 C16 F20 V13 (GQA)", Config(dict(arch="llama", vocab_size=13, n_layer=2, n_head=4,
                                                            n_kv_head=2, d_model=16, d_ff=20, max_seq_len=8,
                                                            norm_eps=1e-6, rope_theta=10.0)), 2, 6),
        ("llama  L1 H2 KV1 C12 F10 V9 (MQA)", Config(dict(arch="llama", vocab_size=9, n_layer=1, n_head=2,
                                                          n_kv_head=1, d_model=12, d_ff=10, max_seq_len=6,
                                                          norm_eps=1e-5, rope_theta=10000.0)), 3, 4),
        ("llama  L1 H2 KV2 C8 F16 V7 (MHA)", Config(dict(arch="llama", vocab_size=7, n_layer=1, n_head=2,
                                                         n_kv_head=2, d_model=8, d_ff=16, max_seq_len=5,
                                                         norm_eps=1e-6, rope_theta=500.0)), 1, 5),
    ]
    for i, (label, cfg, B, T) in enumerate(cases):
        r = gradcheck(cfg, B, T, seed=100 + i)
        status = "ok" if r["ok"] else "FAILED"
        print(f"{label}: loss {r['loss']:.6f}, {r['n_checked']} coords over {len(r['rows'])} params, "
              f"max rel err {r['worst']:.2e} ({r['worst_name']}) -> {status}")
        if verbose or not r["ok"]:
            for name, e, gmax in r["rows"]:
                print(f"    {name:45s} max rel err {e:.2e}   max|grad| {gmax:.2e}")
        ok &= r["ok"]

    # --- end-to-end through the file interface (what the Swift tests use) ---
    cfg = cases[1][1]
    rng = np.random.default_rng(7)
    params = random_params(cfg, rng)
    tokens = rng.integers(0, cfg.vocab_size, size=(2, 5)).astype(np.int32)
    with tempfile.TemporaryDirectory() as d:
        cp, pp, op = (os.path.join(d, n) for n in ("cfg.json", "p.safetensors", "out.safetensors"))
        with open(cp, "w") as f:
            json.dump(cfg.to_dict(), f)
        inp = {k: v.astype(np.float32) for k, v in params.items()}
        inp["tokens"] = tokens
        safetensors_np.save_file(inp, pp)
        run(cp, pp, op)
        out = safetensors_np.load_file(op)
    p32 = {k: v.astype(np.float32).astype(F64) for k, v in params.items()}
    loss, logits, grads = loss_and_grads(cfg, p32, tokens)
    io_ok = (out["loss"].shape == (1,) and out["loss"][0] == loss and np.array_equal(out["logits"], logits)
             and all(np.array_equal(out["grad." + k], g) for k, g in grads.items())
             and len(out) == 2 + len(grads))
    print(f"file interface (--config/--params/--out): {'ok' if io_ok else 'FAILED'}")
    ok &= io_ok

    print("SELF-TEST PASSED" if ok else "SELF-TEST FAILED")
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config")
    ap.add_argument("--params")
    ap.add_argument("--out")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="per-parameter self-test table")
    a = ap.parse_args(argv)
    if a.self_test:
        return 0 if self_test(verbose=a.verbose) else 1
    if not (a.config and a.params and a.out):
        ap.error("--config, --params and --out are required (or --self-test)")
    loss = run(a.config, a.params, a.out)
    print(f"loss {loss:.10f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
