"""The PyTorch peer of `research bench`: the bench's Llama-style decoder (tied embeddings, RMSNorm, RoPE, grouped-query
attention, SwiGLU), trained in PyTorch eager with torch.optim.AdamW (weight decay on matrices), mean cross-entropy and
clip_grad_norm_(1.0) on random token batches of the bench's shape.

Protocol (stdin/stdout, one line each): argv[1] is the config as JSON. After building the model and running the warm-up
steps the script prints one JSON line describing itself (torch version, BLAS, attention, parameters). Then each input
line "N" runs N more steps and answers with their seconds; "quit" ends. The bench interleaves these rounds with its own.
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(seq, head_dim, theta):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq, dtype=torch.float32), inv)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def attention(q, k, v):
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[-2]
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    mask = torch.ones(t, t, dtype=torch.bool).triu(1)
    return torch.matmul(scores.masked_fill(mask, float("-inf")).softmax(-1), v)


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c["hidden"], c["head_dim"]
        self.heads, self.kv, self.hd = c["heads"], c["kv_heads"], hd
        self.input_layernorm = RMSNorm(d, c["rms_eps"])
        self.q_proj = torch.nn.Linear(d, self.heads * hd, bias=False)
        self.k_proj = torch.nn.Linear(d, self.kv * hd, bias=False)
        self.v_proj = torch.nn.Linear(d, self.kv * hd, bias=False)
        self.o_proj = torch.nn.Linear(self.heads * hd, d, bias=False)
        self.post_attention_layernorm = RMSNorm(d, c["rms_eps"])
        self.gate_proj = torch.nn.Linear(d, c["intermediate"], bias=False)
        self.up_proj = torch.nn.Linear(d, c["intermediate"], bias=False)
        self.down_proj = torch.nn.Linear(c["intermediate"], d, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        groups = self.heads // self.kv
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        a = attention(q, k, v).transpose(1, 2).reshape(b, t, self.heads * self.hd)
        x = x + self.o_proj(a)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Decoder(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(c["vocab"], c["hidden"])
        self.layers = torch.nn.ModuleList([Layer(c) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["hidden"], c["rms_eps"])
        self.lm_head = None if c["tied"] else torch.nn.Linear(c["hidden"], c["vocab"], bias=False)
        cos, sin = rope_tables(c["seq"], c["head_dim"], c["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for p in self.parameters():
            if p.dim() >= 2:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, tokens):
        x = self.embed_tokens(tokens)
        t = tokens.shape[1]
        for layer in self.layers:
            x = layer(x, self.cos[:t], self.sin[:t])
        x = self.norm(x)
        return F.linear(x, self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight)


def blas():
    """The BLAS library libtorch resolved, from this process's memory map (Debian's alternatives decide which)."""
    import os
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if "blas" in path.lower() or "mkl" in path.lower():
                libs.add(os.path.realpath(path))
    return ", ".join(sorted(libs)) or "none mapped"


def main():
    c = json.loads(sys.argv[1])
    torch.set_num_threads(c["threads"])
    torch.manual_seed(c["seed"])
    model = Decoder(c)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": c["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
                                  lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["eps"])
    generator = torch.Generator().manual_seed(c["seed"])

    def steps(n):
        for _ in range(n):
            tokens = torch.randint(c["vocab"], (c["batch"], c["seq"] + 1), generator=generator)
            optimizer.zero_grad(set_to_none=False)
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), c["grad_clip"])
            optimizer.step()
        return loss.item()

    steps(c["warmup"])
    print(json.dumps({
        "torch": torch.__version__, "blas": blas(), "threads": torch.get_num_threads(),
        "attention": "F.scaled_dot_product_attention" if HAS_SDPA else "explicit causal matmul + masked softmax (no SDPA in this torch)",
        "optimizer": "torch.optim.AdamW (default implementation)",
        "parameters": sum(p.numel() for p in model.parameters()),
    }), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if line == "quit":
            break
        start = time.perf_counter()
        loss = steps(int(line))
        print(json.dumps({"seconds": time.perf_counter() - start, "loss": loss}), flush=True)


if __name__ == "__main__":
    main()
