"""The PyTorch twin of Keel's GPT-2 and Llama models, written out by hand (nanoGPT style) for the peer benchmark.

Same shapes, parameter count, initialisation and optimizer groups as Keel (Sources/KeelModel/ParameterTable.swift):

  * GPT-2: learned token and position embeddings, pre-LayerNorm (eps 1e-5) blocks with biases everywhere,
    GELU (tanh approximation) MLP of width 4·d, head tied to the token embedding.
  * Llama: RMSNorm (eps 1e-6), RoPE (theta 10000, rotate-half), SwiGLU MLP of width round_up(8·d/3, 64),
    grouped-query attention (n_kv_head = n_head in the presets), no biases, untied lm_head.

Layout differences that change no arithmetic, chosen so PyTorch runs its fastest eager kernels: weights are
nn.Linear's [out, in] (Keel's GPT-2 keeps Hugging Face Conv1D's [in, out]); Llama's q/k/v projections are one
Linear and gate/up another (Keel also runs each group as one GEMM). Attention is
F.scaled_dot_product_attention(is_causal=True); the loss is F.cross_entropy with mean reduction.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from configs import CONFIGS, BenchConfig, ModelConfig, model_flops_per_step, parameter_count  # noqa: F401


class GPT2Block(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.n_head = c.n_head
        self.ln_1 = nn.LayerNorm(c.d_model, eps=c.norm_eps)
        self.c_attn = nn.Linear(c.d_model, 3 * c.d_model)
        self.attn_proj = nn.Linear(c.d_model, c.d_model)
        self.ln_2 = nn.LayerNorm(c.d_model, eps=c.norm_eps)
        self.c_fc = nn.Linear(c.d_model, c.d_ff)
        self.mlp_proj = nn.Linear(c.d_ff, c.d_model)
        self.attn_proj.residual = True
        self.mlp_proj.residual = True

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.n_head, -1).transpose(1, 2)
        k = k.view(B, T, self.n_head, -1).transpose(1, 2)
        v = v.view(B, T, self.n_head, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim, self.d_ff = c.n_head, c.n_kv_head, c.head_dim, c.d_ff
        q, kv = c.n_head * c.head_dim, c.n_kv_head * c.head_dim
        self.input_layernorm = nn.RMSNorm(c.d_model, eps=c.norm_eps)
        self.qkv_proj = nn.Linear(c.d_model, q + 2 * kv, bias=False)
        self.o_proj = nn.Linear(q, c.d_model, bias=False)
        self.post_attention_layernorm = nn.RMSNorm(c.d_model, eps=c.norm_eps)
        self.gate_up_proj = nn.Linear(c.d_model, 2 * c.d_ff, bias=False)
        self.down_proj = nn.Linear(c.d_ff, c.d_model, bias=False)
        self.o_proj.residual = True
        self.down_proj.residual = True

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        hd = self.head_dim
        q, k, v = self.qkv_proj(self.input_layernorm(x)).split(
            [self.n_head * hd, self.n_kv_head * hd, self.n_kv_head * hd], dim=2)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, hd).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_head != self.n_head)
        x = x + self.o_proj(y.transpose(1, 2).reshape(B, T, C))
        gate, up = self.gate_up_proj(self.post_attention_layernorm(x)).split(self.d_ff, dim=2)
        return x + self.down_proj(F.silu(gate) * up)


class Transformer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.config = c
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        if c.arch == "gpt2":
            self.pos_emb = nn.Embedding(c.max_seq_len, c.d_model)
            self.blocks = nn.ModuleList(GPT2Block(c) for _ in range(c.n_layer))
            self.norm = nn.LayerNorm(c.d_model, eps=c.norm_eps)
            self.lm_head = None  # tied: logits = x · tok_emb.weightᵀ
        else:
            self.blocks = nn.ModuleList(LlamaBlock(c) for _ in range(c.n_layer))
            self.norm = nn.RMSNorm(c.d_model, eps=c.norm_eps)
            self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
            inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, c.head_dim, 2, dtype=torch.float64) / c.head_dim))
            angles = torch.outer(torch.arange(c.max_seq_len, dtype=torch.float64), inv_freq)
            angles = torch.cat((angles, angles), dim=-1)
            self.register_buffer("rope_cos", angles.cos().float(), persistent=False)
            self.register_buffer("rope_sin", angles.sin().float(), persistent=False)
        self._initialize()

    def _initialize(self):
        std = 0.02
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, residual_std if getattr(module, "residual", False) else std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.tok_emb(idx)
        if self.config.arch == "gpt2":
            x = x + self.pos_emb.weight[:T]
            for block in self.blocks:
                x = block(x)
            logits = F.linear(self.norm(x), self.tok_emb.weight)
        else:
            cos, sin = self.rope_cos[:T], self.rope_sin[:T]
            for block in self.blocks:
                x = block(x, cos, sin)
            logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))

    def optimizer_groups(self, weight_decay):
        """Keel's groups: 2-D weight matrices decay (Llama's untied lm_head included); embeddings, norms and
        biases do not."""
        embeddings = {id(self.tok_emb.weight)} | ({id(self.pos_emb.weight)} if self.config.arch == "gpt2" else set())
        decay, no_decay = [], []
        for p in self.parameters():
            (decay if p.dim() == 2 and id(p) not in embeddings else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
