"""Benchmark configurations and Keel's parameter and FLOP counts, without PyTorch (peer.py and the Keel stub
import this with any Python)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # "gpt2" or "llama"
    vocab_size: int
    n_layer: int
    n_head: int
    d_model: int
    max_seq_len: int
    n_kv_head: int = 0  # 0: n_head
    d_ff: int = 0  # 0: the architecture's default
    norm_eps: float = 0.0  # 0: the architecture's default
    rope_theta: float = 10000.0

    def __post_init__(self):
        assert self.arch in ("gpt2", "llama")
        if self.n_kv_head == 0 or self.arch == "gpt2":
            object.__setattr__(self, "n_kv_head", self.n_head)
        if self.d_ff == 0:
            ff = 4 * self.d_model if self.arch == "gpt2" else (8 * self.d_model // 3 + 63) // 64 * 64
            object.__setattr__(self, "d_ff", ff)
        if self.norm_eps == 0.0:
            object.__setattr__(self, "norm_eps", 1e-5 if self.arch == "gpt2" else 1e-6)

    @property
    def head_dim(self):
        return self.d_model // self.n_head


@dataclass(frozen=True)
class BenchConfig:
    name: str
    model: ModelConfig
    batch: int
    seq: int

    @property
    def tokens_per_step(self):
        return self.batch * self.seq


def _preset(name, arch, n_layer, n_head, d_model, max_seq_len, batch, seq):
    return BenchConfig(name, ModelConfig(arch, 50304, n_layer, n_head, d_model, max_seq_len), batch, seq)


CONFIGS = {c.name: c for c in [
    _preset("gpt2-124m", "gpt2", 12, 12, 768, 1024, 4, 256),
    _preset("small", "gpt2", 6, 6, 384, 256, 8, 256),
    _preset("gpt2-124m-llama", "llama", 12, 12, 768, 1024, 4, 256),
    _preset("small-llama", "llama", 6, 6, 384, 256, 8, 256),
    _preset("gpt2-124m-1k", "gpt2", 12, 12, 768, 1024, 1, 1024),
]}


def parameter_count(c: ModelConfig):
    """Every parameter once (the tied GPT-2 embedding once, position embeddings included), as Keel counts."""
    d, f, v, L = c.d_model, c.d_ff, c.vocab_size, c.n_layer
    if c.arch == "gpt2":
        block = 2 * (2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
        return v * d + c.max_seq_len * d + L * block + 2 * d
    q, kv = c.n_head * c.head_dim, c.n_kv_head * c.head_dim
    block = 2 * d + d * (q + 2 * kv) + q * d + 3 * d * f
    return v * d + L * block + d + v * d


def multiplied_parameter_count(c: ModelConfig):
    """Parameters that enter matrix products: all but the tables only looked up (GPT-2's position table,
    Llama's untied input embedding), as `keel bench` counts them."""
    looked_up = c.max_seq_len * c.d_model if c.arch == "gpt2" else c.vocab_size * c.d_model
    return parameter_count(c) - looked_up


def model_flops_per_step(bench: BenchConfig):
    """6·N·tokens (dense matmuls, forward + backward, N = multiplied parameters) + 12·n_layer·T·d_model·tokens
    (attention scores and values, forward + backward, without causal halving): the formula peer.py and
    `keel bench` share."""
    c = bench.model
    tokens = bench.tokens_per_step
    return 6 * multiplied_parameter_count(c) * tokens + 12 * c.n_layer * bench.seq * c.d_model * tokens
