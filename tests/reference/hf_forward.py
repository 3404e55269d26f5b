#!/usr/bin/env python3
"""Independent reference forward pass for Hugging Face causal-LM checkpoints.

Usage:
    /usr/bin/python3 tests/reference/hf_forward.py REQUEST.json

REQUEST.json:
    {
      "model_dir": "...",                 # holds config.json + model.safetensors
                                          # (or model.safetensors.index.json + shards)
      "input_ids": [[...], ...],          # B rows of equal length T
      "out": "path/to/logits.bin",        # raw little-endian float32, shape [B, T, V]
      "dtype": "float64" | "float32",     # optional compute dtype, default float64
      "position_ids": [[...], ...],       # optional, B rows (or 1 row, broadcast) of T ints
      "packed_sequences": false           # optional, see "Masks" below
    }
Prints one line of JSON, {"shape": [B, T, V]}, on stdout.  Any error: message on
stderr, exit status 1 (2 for a malformed command line).

Needs only torch (Debian python3-torch 1.13) and numpy.  Safetensors is parsed by
hand.  No transformers import: this file is written from a reading of
Hugging Face transformers' own modeling code (eager attention, eval mode, no
padding, no KV cache), to serve as an independent check of another decoder.

Sources read (huggingface/transformers; the full repository was too large to
mirror, so files were read one by one from a stored index of the repository and
from verbatim copies of main that other public repositories carry):
  * models/gemma3/modeling_gemma3.py   @ f14d0cbc824e447ef294d8cdc0f8ad4222f3dfee (v4.57 era)
  * models/gemma/modeling_gemma.py     @ c4cdd1a0d93642f0143c66609d4273efc74c22cf (v4.48 era)
  * models/llama/modeling_llama.py, modeling_rope_utils.py @ ef46806472a64b0013ed413781e3afed82bfa047
    and 0044e3b3facff1a1ad60b235c69d5b45beae75a4 (older; used only for the unchanged parts)
  * v5 main (transformers 5.x; "fetched from main" copies): modeling_rope_utils.py
    (_compute_{default,linear,dynamic_ntk,yarn,longrope,llama3}_parameters,
    dynamic_rope_update), configuration_utils.RotaryEmbeddingConfigMixin
    (convert_rope_params_to_dict / standardize_rope_params / _validate_yarn...),
    masking_utils.py (causal_mask_function, sliding_window_overlay,
    find_packed_sequence_indices), gemma/gemma2/gemma3 dataclass configs
    (layer_types, rope_parameters per layer type), qwen2/qwen3 configs
    (use_sliding_window, max_window_layers, layer_types).
Where versions differ the v5 (current main) rule is used and noted in a comment.

Precision: in "float32" mode every step follows HF's float32 path (RoPE angles
and inv_freq in float32 exactly as HF builds them).  In "float64" mode every step,
RoPE included, runs in float64 (HF itself would drop to float32 inside RMSNorm,
RoPE and softmax; float64 here is the exact-math value, which is what a
reference should be).  Weights are converted from their stored dtype to the
compute dtype.  Logits are always written as float32.
"""

import json
import math
import os
import sys

import numpy as np
import torch


class RefError(Exception):
    pass


# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "F64": (np.dtype("<f8"), 8),
}


class SafetensorsFile:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise RefError(f"{path}: too short to be a safetensors file")
            n = int.from_bytes(raw, "little")
            header = f.read(n)
            if len(header) != n:
                raise RefError(f"{path}: truncated header")
        try:
            meta = json.loads(header.decode("utf-8"))
        except Exception as e:  # noqa: BLE001
            raise RefError(f"{path}: header is not JSON: {e}")
        self.data_start = 8 + n
        self.entries = {k: v for k, v in meta.items() if k != "__metadata__"}
        self.size = os.path.getsize(path)
        self._mm = None

    def names(self):
        return list(self.entries.keys())

    def read(self, name):
        e = self.entries[name]
        dt = e["dtype"]
        if dt not in _ST_DTYPES:
            raise RefError(f"{self.path}: tensor {name} has unsupported dtype {dt}")
        npdt, item = _ST_DTYPES[dt]
        shape = [int(s) for s in e["shape"]]
        b, en = (int(x) for x in e["data_offsets"])
        count = 1
        for s in shape:
            count *= s
        if en - b != count * item:
            raise RefError(f"{self.path}: tensor {name}: {en - b} bytes for shape {shape} of {dt}")
        if self.data_start + en > self.size:
            raise RefError(f"{self.path}: tensor {name} runs past the end of the file")
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        buf = np.array(self._mm[self.data_start + b:self.data_start + en])  # copy
        arr = buf.view(npdt)
        if dt == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            arr = arr.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(arr).reshape(shape))


class Weights:
    """All tensors of a checkpoint, by name; records which ones the model used."""

    def __init__(self, model_dir, dtype):
        self.dtype = dtype
        single = os.path.join(model_dir, "model.safetensors")
        index = os.path.join(model_dir, "model.safetensors.index.json")
        self.where = {}
        if os.path.isfile(single):
            f = SafetensorsFile(single)
            for n in f.names():
                self.where[n] = f
        elif os.path.isfile(index):
            with open(index) as fh:
                wm = json.load(fh).get("weight_map")
            if not isinstance(wm, dict):
                raise RefError(f"{index}: no weight_map")
            files = {}
            for name, shard in wm.items():
                if shard not in files:
                    p = os.path.join(model_dir, shard)
                    if not os.path.isfile(p):
                        raise RefError(f"missing shard {p}")
                    files[shard] = SafetensorsFile(p)
                if name not in files[shard].entries:
                    raise RefError(f"weight_map puts {name} in {shard}, which lacks it")
                self.where[name] = files[shard]
        else:
            raise RefError(f"{model_dir}: neither model.safetensors nor model.safetensors.index.json")
        self.used = set()
        self.prefix_map = {}  # canonical name -> stored name
        self.prefix = ""  # the prefix most stored names carry (for messages)

    def set_aliases(self, strip_prefixes):
        """Let a canonical name 'X' be found as 'P' + 'X' for one of the given prefixes."""
        counts = {p: sum(1 for n in self.where if n.startswith(p)) for p in strip_prefixes}
        if counts and max(counts.values()) > len(self.where) // 2:
            self.prefix = max(counts, key=counts.get)
        for stored in self.where:
            canon = stored
            for p in strip_prefixes:
                if stored.startswith(p):
                    canon = stored[len(p):]
                    break
            if canon in self.prefix_map and self.prefix_map[canon] != stored:
                raise RefError(f"both {self.prefix_map[canon]} and {stored} present")
            self.prefix_map[canon] = stored

    def has(self, name):
        return name in self.prefix_map

    def get(self, name, shape=None):
        if name not in self.prefix_map:
            shown = name if name.startswith("lm_head.") else self.prefix + name
            raise RefError(f"missing tensor: {shown}")
        stored = self.prefix_map[name]
        self.used.add(stored)
        t = self.where[stored].read(stored)
        if shape is not None and list(t.shape) != list(shape):
            raise RefError(f"tensor {stored}: shape {list(t.shape)}, expected {list(shape)}")
        return t.to(self.dtype)

    def mark_ignored(self, name):
        if name in self.prefix_map:
            self.used.add(self.prefix_map[name])

    def check_all_used(self, ignorable_suffixes):
        extra = []
        for stored in sorted(self.where):
            if stored in self.used:
                continue
            if any(stored.endswith(s) for s in ignorable_suffixes):
                continue
            extra.append(stored)
        if extra:
            shown = ", ".join(extra[:20]) + (" ..." if len(extra) > 20 else "")
            raise RefError(f"unexpected tensors ({len(extra)}): {shown}")


# --------------------------------------------------------------------------------------
# activations (transformers.activations.ACT2FN)
# --------------------------------------------------------------------------------------

def _act(name):
    if name is None:
        raise RefError("activation is null")
    n = str(name)
    if n in ("silu", "swish"):
        return lambda x: x * torch.sigmoid(x)
    if n in ("gelu", "gelu_python"):  # exact, erf based
        return lambda x: torch.nn.functional.gelu(x)
    if n == "gelu_pytorch_tanh":
        return lambda x: torch.nn.functional.gelu(x, approximate="tanh")
    if n == "gelu_new":
        c = math.sqrt(2.0 / math.pi)
        return lambda x: 0.5 * x * (1.0 + torch.tanh(c * (x + 0.044715 * torch.pow(x, 3.0))))
    if n == "gelu_fast":
        return lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))
    if n == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if n == "relu":
        return torch.relu
    if n == "tanh":
        return torch.tanh
    if n == "sigmoid":
        return torch.sigmoid
    raise RefError(f"unsupported activation {n!r}")


# --------------------------------------------------------------------------------------
# RoPE (modeling_rope_utils.py, v5)
# --------------------------------------------------------------------------------------

def _rope_dtype(compute_dtype):
    # HF always builds inv_freq and the angles in float32.
    return torch.float32 if compute_dtype == torch.float32 else torch.float64


def _default_inv_freq(base, dim, rd):
    # 1 / base ** (arange(0, dim, 2).float() / dim)
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(rd) / dim))


class RopeSpec:
    """One resolved rope_parameters dict (v5 standardize_rope_params applied)."""

    def __init__(self, params, head_dim, max_pos, family_partial_ok):
        self.p = dict(params)
        self.rope_type = self.p.get("rope_type", self.p.get("type", "default")) or "default"
        self.theta = float(self.p["rope_theta"])
        prf = self.p.get("partial_rotary_factor", 1.0)
        self.partial = 1.0 if prf is None else float(prf)
        self.head_dim = head_dim
        self.dim = int(head_dim * self.partial)
        if self.dim != head_dim and not family_partial_ok:
            raise RefError(
                f"partial_rotary_factor={self.partial} is not supported by this family's HF code "
                "(its apply_rotary_pos_emb rotates the whole head)")
        if self.dim % 2 != 0 or self.dim <= 0:
            raise RefError(f"rotary dim {self.dim} must be even and positive")
        self.max_pos = int(max_pos)
        if self.rope_type not in ("default", "linear", "dynamic", "yarn", "llama3", "longrope"):
            raise RefError(f"unsupported rope_type {self.rope_type!r}")

    # returns (inv_freq [dim/2], attention_factor) for the given runtime seq_len
    def inv_freq(self, seq_len, rd):
        t, p, dim, base = self.rope_type, self.p, self.dim, self.theta
        if t == "default":
            return _default_inv_freq(base, dim, rd), 1.0
        if t == "linear":
            return _default_inv_freq(base, dim, rd) / float(p["factor"]), 1.0
        if t == "dynamic":
            # dynamic_rope_update: recompute only when max(position_ids)+1 exceeds
            # max_seq_len_cached (== max_position_embeddings for a fresh model); the init
            # value (seq_len=None -> max_position_embeddings) equals plain RoPE.
            factor = float(p["factor"])
            sl = max(seq_len, self.max_pos)
            if rd == torch.float32:
                # HF: seq_len is an int64 tensor -> the bracket is a float32 tensor
                slt = torch.tensor(sl, dtype=torch.int64)
                b = base * ((factor * slt / self.max_pos) - (factor - 1)) ** (dim / (dim - 2))
            else:
                b = torch.tensor(base * ((factor * sl / self.max_pos) - (factor - 1)) ** (dim / (dim - 2)),
                                 dtype=torch.float64)
            return 1.0 / (b ** (torch.arange(0, dim, 2, dtype=torch.int64).to(rd) / dim)), 1.0
        if t == "llama3":
            inv = _default_inv_freq(base, dim, rd)
            factor = float(p["factor"])
            lo = float(p["low_freq_factor"])
            hi = float(p["high_freq_factor"])
            old = float(p["original_max_position_embeddings"])
            low_wl = old / lo
            high_wl = old / hi
            wavelen = 2 * math.pi / inv
            inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
            smooth = (old / wavelen - lo) / (hi - lo)
            smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
            medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
            return torch.where(medium, smoothed, inv_l), 1.0
        if t == "yarn":
            orig = float(p["original_max_position_embeddings"])
            factor = p.get("factor")
            if factor is None:  # v5: only when factor is absent
                factor = self.max_pos / orig
            factor = float(factor)
            att = p.get("attention_factor")
            mscale = p.get("mscale")
            mscale_all = p.get("mscale_all_dim")

            def get_mscale(scale, m=1.0):
                if scale <= 1:
                    return 1.0
                return 0.1 * m * math.log(scale) + 1.0

            if att is None:
                if mscale and mscale_all:
                    att = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all))
                else:
                    att = get_mscale(factor)
            beta_fast = p.get("beta_fast") or 32
            beta_slow = p.get("beta_slow") or 1
            truncate = p.get("truncate", True)

            def corr_dim(rot):
                return (dim * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(base))

            low = corr_dim(beta_fast)
            high = corr_dim(beta_slow)
            if truncate:
                low = math.floor(low)
                high = math.ceil(high)
            low, high = max(low, 0), min(high, dim - 1)
            if low == high:
                high += 0.001
            ramp = torch.clamp((torch.arange(dim // 2, dtype=rd) - low) / (high - low), 0, 1)
            pos_freqs = base ** (torch.arange(0, dim, 2).to(rd) / dim)
            extra = 1.0 / pos_freqs
            inter = 1.0 / (factor * pos_freqs)
            ext_factor = 1 - ramp
            return inter * (1 - ext_factor) + extra * ext_factor, float(att)
        if t == "longrope":
            orig = int(p["original_max_position_embeddings"])
            factor = p.get("factor")
            if factor is None:
                factor = self.max_pos / orig
            factor = float(factor)
            att = p.get("attention_factor")
            if att is None:
                att = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
            key = "long_factor" if seq_len > orig else "short_factor"
            ext = torch.tensor(p[key], dtype=rd)
            if ext.numel() != dim // 2:
                raise RefError(f"rope {key} has {ext.numel()} entries, expected {dim // 2}")
            shape = torch.arange(0, dim, 2, dtype=torch.int64).to(rd) / dim
            return 1.0 / (ext * base ** shape), float(att)
        raise RefError(f"unsupported rope_type {t!r}")

    def cos_sin(self, position_ids, compute_dtype):
        rd = _rope_dtype(compute_dtype)
        seq_len = int(position_ids.max().item()) + 1
        inv, att = self.inv_freq(seq_len, rd)
        inv = inv.to(rd)
        freqs = inv[None, :, None].expand(position_ids.shape[0], -1, 1) @ position_ids[:, None, :].to(rd)
        freqs = freqs.transpose(1, 2)  # [B, T, dim/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * att
        sin = emb.sin() * att
        return cos.to(compute_dtype), sin.to(compute_dtype)


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def _apply_rope(x, cos, sin):
    # x [B, H, T, hd]; cos/sin [B, T, rot]; a rot < hd passes the tail through (Phi3)
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    rot = cos.shape[-1]
    if rot == x.shape[-1]:
        return x * cos + _rotate_half(x) * sin
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat((xr * cos + _rotate_half(xr) * sin, xp), dim=-1)


def resolve_rope(cfg, head_dim, max_pos, default_theta, partial_ok, family):
    """v5 RotaryEmbeddingConfigMixin.convert_rope_params_to_dict + standardize_rope_params
    for a single (global) rope dict."""
    rp = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    rp = dict(rp)
    rp.setdefault("rope_theta", cfg.get("rope_theta", default_theta))
    rp.setdefault("rope_type", rp.get("type", "default"))
    if rp["rope_type"] is None:
        rp["rope_type"] = "default"
    prf = cfg.get("partial_rotary_factor")
    if family == "phi3" and prf is None:
        prf = 1.0  # Phi3Config default
    if prf is not None:
        rp["partial_rotary_factor"] = prf  # top-level value wins (assignment in standardize)
    if rp["rope_type"] in ("llama3", "yarn", "longrope"):
        top_orig = cfg.get("original_max_position_embeddings")
        if family == "phi3" and top_orig is None:
            top_orig = 4096  # Phi3Config default attribute
        if top_orig is not None:
            rp["original_max_position_embeddings"] = top_orig  # top-level wins (Phi3 rule)
        else:
            rp.setdefault("original_max_position_embeddings", max_pos)
    return RopeSpec(rp, head_dim, max_pos, partial_ok)


# --------------------------------------------------------------------------------------
# masks (masking_utils.py)
# --------------------------------------------------------------------------------------

def build_mask(T, sliding_window, segments):
    """Boolean [B or 1, 1, T, T]: query i sees key j iff j <= i (causal_mask_function)
    and, with a window W, j > i - W (sliding_window_overlay), and, with packed
    segments, both in the same segment (packed_sequence_mask_function).
    Indices are token positions in the row (cache_position), not position_ids."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    m = j <= i
    if sliding_window is not None:
        m = m & (j > i - int(sliding_window))
    m = m[None, None]
    if segments is not None:
        m = m & (segments[:, None, :, None] == segments[:, None, None, :])
    return m


def packed_segments(position_ids):
    # find_packed_sequence_indices: a new sequence starts wherever the position does not
    # step by exactly 1 from the previous token.
    first = position_ids[:, :1] - 1
    diff = torch.diff(position_ids, prepend=first, dim=-1)
    return (diff != 1).cumsum(-1)


# --------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------

def rms_norm(x, w, eps, gemma):
    var = x.pow(2).mean(-1, keepdim=True)
    y = x * torch.rsqrt(var + eps)
    return y * (1.0 + w) if gemma else w * y


def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def linear(x, w, b=None):
    y = x @ w.t()
    return y + b if b is not None else y


def attention(q, k, v, mask, scaling, softcap):
    # q [B, nH, T, hd], k/v [B, nKV, T, hd]
    nH, nKV = q.shape[1], k.shape[1]
    if nH != nKV:
        rep = nH // nKV
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    s = (q @ k.transpose(2, 3)) * scaling
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = p @ v  # [B, nH, T, hd]
    return o.transpose(1, 2).reshape(q.shape[0], q.shape[2], nH * q.shape[3])


# --------------------------------------------------------------------------------------
# llama-like families
# --------------------------------------------------------------------------------------

FAMILY_DEFAULTS = {
    # key defaults from each HF Config class (used only when config.json lacks the key)
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, hidden_act="silu", max_position_embeddings=2048,
                  rms_norm_eps=1e-6, tie_word_embeddings=False, rope_theta=10000.0,
                  attention_bias=False, mlp_bias=False),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, hidden_act="silu",
                    max_position_embeddings=4096 * 32, rms_norm_eps=1e-6, tie_word_embeddings=False,
                    rope_theta=10000.0, sliding_window=4096),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, hidden_act="silu",
                  max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  rope_theta=10000.0, use_sliding_window=False, sliding_window=4096, max_window_layers=28),
    "qwen3": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, head_dim=128, hidden_act="silu",
                  max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  rope_theta=10000.0, attention_bias=False, use_sliding_window=False,
                  sliding_window=4096, max_window_layers=28),
    "gemma": dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=16, head_dim=256,
                  hidden_act="gelu_pytorch_tanh", max_position_embeddings=8192, rms_norm_eps=1e-6,
                  tie_word_embeddings=True, rope_theta=10000.0, attention_bias=False),
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                   hidden_activation="gelu_pytorch_tanh", max_position_embeddings=8192, rms_norm_eps=1e-6,
                   tie_word_embeddings=True, rope_theta=10000.0, attention_bias=False,
                   query_pre_attn_scalar=256, sliding_window=4096, final_logit_softcapping=30.0,
                   attn_logit_softcapping=50.0),
    "gemma3_text": dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                        hidden_activation="gelu_pytorch_tanh", max_position_embeddings=131072,
                        rms_norm_eps=1e-6, tie_word_embeddings=True, rope_theta=1000000.0,
                        rope_local_base_freq=10000.0, attention_bias=False, query_pre_attn_scalar=256,
                        sliding_window=4096, sliding_window_pattern=6, final_logit_softcapping=None,
                        attn_logit_softcapping=None, use_bidirectional_attention=False),
    "phi3": dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                 num_attention_heads=32, hidden_act="silu", max_position_embeddings=4096,
                 original_max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
                 rope_theta=10000.0, partial_rotary_factor=1.0, sliding_window=None),
}


class Cfg:
    def __init__(self, raw, family):
        self.raw = raw
        self.defaults = FAMILY_DEFAULTS.get(family, {})

    def __call__(self, key, default=None):
        if key in self.raw:
            return self.raw[key]
        return self.defaults.get(key, default)


def forward_decoder(family, raw, W, ids, pos, dt, packed):
    c = Cfg(raw, family)
    gemma_like = family in ("gemma", "gemma2", "gemma3_text")
    V = int(c("vocab_size"))
    H = int(c("hidden_size"))
    I = int(c("intermediate_size"))
    L = int(c("num_hidden_layers"))
    nH = int(c("num_attention_heads"))
    nKV = c("num_key_value_heads")
    nKV = nH if nKV is None else int(nKV)
    hd = c("head_dim")
    hd = H // nH if hd is None else int(hd)  # llama/mistral/qwen2/phi3: `head_dim or H // nH`
    if nH % nKV != 0:
        raise RefError(f"num_attention_heads {nH} not a multiple of num_key_value_heads {nKV}")
    eps = float(c("rms_norm_eps"))
    max_pos = int(c("max_position_embeddings"))
    tie = bool(c("tie_word_embeddings"))

    # ---- activation
    if family in ("gemma2", "gemma3_text"):
        act = _act(c("hidden_activation"))  # Gemma2MLP / Gemma3MLP: ACT2FN[config.hidden_activation]
    else:
        act = _act(c("hidden_act"))  # LlamaMLP (and GemmaMLP, which is LlamaMLP): ACT2FN[config.hidden_act]

    # ---- per-layer attention type and window
    layer_types = c("layer_types")
    if family == "mistral":
        sw = c("sliding_window")
        layer_types = ["sliding_attention" if sw is not None else "full_attention"] * L
    elif family == "phi3":
        sw = c("sliding_window")
        layer_types = ["sliding_attention" if sw is not None else "full_attention"] * L
    elif family in ("qwen2", "qwen3"):
        sw = c("sliding_window") if c("use_sliding_window") else None
        if layer_types is None:
            mwl = int(c("max_window_layers"))
            layer_types = ["sliding_attention" if sw is not None and i >= mwl else "full_attention"
                           for i in range(L)]
    elif family == "gemma2":
        sw = c("sliding_window")
        if layer_types is None:
            layer_types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(L)]
    elif family == "gemma3_text":
        if c("use_bidirectional_attention"):
            raise RefError("use_bidirectional_attention=true is not supported by this reference")
        sw = c("sliding_window")
        if layer_types is None:
            pat = int(c("sliding_window_pattern"))
            layer_types = ["sliding_attention" if (i + 1) % pat else "full_attention" for i in range(L)]
    else:  # llama, gemma: no sliding window at all
        sw = None
        layer_types = ["full_attention"] * L
    if len(layer_types) != L:
        raise RefError(f"layer_types has {len(layer_types)} entries for {L} layers")
    for lt in layer_types:
        if lt not in ("full_attention", "sliding_attention"):
            raise RefError(f"unsupported layer type {lt!r}")
    if "sliding_attention" in layer_types and sw is None:
        raise RefError("sliding_attention layers but sliding_window is null (HF raises here too)")

    # ---- rope
    partial_ok = family == "phi3"
    if family == "gemma3_text":
        rp = raw.get("rope_parameters")
        if isinstance(rp, dict) and rp and set(rp.keys()) <= {"full_attention", "sliding_attention"}:
            full_p = dict(rp.get("full_attention") or {"rope_type": "default"})
            slid_p = dict(rp.get("sliding_attention") or {"rope_type": "default"})
        else:
            # legacy: rope_scaling (or a flat rope_parameters) applies to global layers only
            full_p = dict(raw.get("rope_scaling") or rp or {"rope_type": "default"})
            slid_p = {"rope_type": "default"}
        full_p.setdefault("rope_theta", c("rope_theta"))
        slid_p.setdefault("rope_theta", c("rope_local_base_freq"))
        ropes = {}
        for lt, p in (("full_attention", full_p), ("sliding_attention", slid_p)):
            sub = dict(raw)
            sub["rope_scaling"] = p
            sub["rope_theta"] = p["rope_theta"]
            sub.pop("rope_parameters", None)
            ropes[lt] = resolve_rope(sub, hd, max_pos, p["rope_theta"], partial_ok, family)
    else:
        r = resolve_rope(raw, hd, max_pos, c("rope_theta"), partial_ok, family)
        ropes = {"full_attention": r, "sliding_attention": r}
    cs = {lt: ropes[lt].cos_sin(pos, dt) for lt in ("full_attention", "sliding_attention")
          if lt in layer_types}

    # ---- biases
    if family == "qwen2":
        qkv_bias, o_bias = True, False
    elif family in ("llama", "qwen3", "gemma", "gemma2", "gemma3_text"):
        qkv_bias = o_bias = bool(c("attention_bias", False))
    else:  # mistral, phi3: hard-coded bias=False
        qkv_bias = o_bias = False
    mlp_bias = bool(c("mlp_bias", False)) if family == "llama" else False

    # ---- scaling / softcaps
    if family in ("gemma2", "gemma3_text"):
        scaling = float(c("query_pre_attn_scalar")) ** -0.5
    else:
        scaling = hd ** -0.5
    attn_cap = c("attn_logit_softcapping") if family == "gemma2" else None
    # gemma3: HF stores attn_logit_softcapping but never passes it to the attention function
    final_cap = c("final_logit_softcapping") if family in ("gemma2", "gemma3_text") else None

    B, T = ids.shape
    segments = packed_segments(pos) if packed else None
    masks = {"full_attention": build_mask(T, None, segments),
             "sliding_attention": build_mask(T, sw, segments)}

    # ---- weights
    W.set_aliases(["model."])
    emb = W.get("embed_tokens.weight", [V, H])
    h = emb[ids]
    if gemma_like:
        # GemmaModel: normalizer = torch.tensor(H ** 0.5, dtype=hidden_states.dtype)
        # Gemma3TextScaledWordEmbedding: embed_scale.to(weight.dtype) -- same rounding
        h = h * torch.tensor(H ** 0.5, dtype=dt)

    for li in range(L):
        p = f"layers.{li}."
        lt = layer_types[li]
        cos, sin = cs[lt]
        x = rms_norm(h, W.get(p + "input_layernorm.weight", [H]), eps, gemma_like)
        if family == "phi3":
            qkv = linear(x, W.get(p + "self_attn.qkv_proj.weight", [nH * hd + 2 * nKV * hd, H]))
            q = qkv[..., :nH * hd]
            k = qkv[..., nH * hd:nH * hd + nKV * hd]
            v = qkv[..., nH * hd + nKV * hd:]
        else:
            def proj(name, rows):
                w = W.get(p + f"self_attn.{name}.weight", [rows, H])
                b = W.get(p + f"self_attn.{name}.bias", [rows]) if qkv_bias else None
                return linear(x, w, b)
            q = proj("q_proj", nH * hd)
            k = proj("k_proj", nKV * hd)
            v = proj("v_proj", nKV * hd)
        q = q.view(B, T, nH, hd)
        k = k.view(B, T, nKV, hd)
        v = v.view(B, T, nKV, hd)
        if family in ("qwen3", "gemma3_text"):
            q = rms_norm(q, W.get(p + "self_attn.q_norm.weight", [hd]), eps, family == "gemma3_text")
            k = rms_norm(k, W.get(p + "self_attn.k_norm.weight", [hd]), eps, family == "gemma3_text")
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q = _apply_rope(q, cos, sin)
        k = _apply_rope(k, cos, sin)
        a = attention(q, k, v, masks[lt], scaling, attn_cap)
        ow = W.get(p + "self_attn.o_proj.weight", [H, nH * hd])
        ob = W.get(p + "self_attn.o_proj.bias", [H]) if o_bias else None
        a = linear(a, ow, ob)

        if family in ("gemma2", "gemma3_text"):
            a = rms_norm(a, W.get(p + "post_attention_layernorm.weight", [H]), eps, True)
            h = h + a
            x = rms_norm(h, W.get(p + "pre_feedforward_layernorm.weight", [H]), eps, True)
        else:
            h = h + a
            x = rms_norm(h, W.get(p + "post_attention_layernorm.weight", [H]), eps, gemma_like)

        if family == "phi3":
            gu = linear(x, W.get(p + "mlp.gate_up_proj.weight", [2 * I, H]))
            gate, up = gu.chunk(2, dim=-1)  # gate = first half, up = second half
            m = linear(up * act(gate), W.get(p + "mlp.down_proj.weight", [H, I]))
        else:
            def mp(name, shape):
                w = W.get(p + f"mlp.{name}.weight", shape)
                b = W.get(p + f"mlp.{name}.bias", [shape[0]]) if mlp_bias else None
                return w, b
            gw, gb = mp("gate_proj", [I, H])
            uw, ub = mp("up_proj", [I, H])
            dw, db = mp("down_proj", [H, I])
            m = linear(act(linear(x, gw, gb)) * linear(x, uw, ub), dw, db)

        if family in ("gemma2", "gemma3_text"):
            m = rms_norm(m, W.get(p + "post_feedforward_layernorm.weight", [H]), eps, True)
        h = h + m

    h = rms_norm(h, W.get("norm.weight", [H]), eps, gemma_like)
    if tie:
        head = emb
        W.mark_ignored("lm_head.weight")
    elif W.has("lm_head.weight"):
        head = W.get("lm_head.weight", [V, H])
    else:
        sys.stderr.write("warning: tie_word_embeddings is false but lm_head.weight is absent; "
                         "using embed_tokens as the head\n")
        head = emb
    logits = h @ head.t()
    if final_cap is not None:
        logits = torch.tanh(logits / final_cap) * final_cap
    W.check_all_used(["rotary_emb.inv_freq"])
    return logits


# --------------------------------------------------------------------------------------
# gpt2
# --------------------------------------------------------------------------------------

def forward_gpt2(raw, W, ids, pos, dt, packed):
    def g(k, d):
        return raw.get(k, d)
    V = int(g("vocab_size", 50257))
    E = int(g("n_embd", raw.get("hidden_size", 768)))
    L = int(g("n_layer", raw.get("num_hidden_layers", 12)))
    nH = int(g("n_head", raw.get("num_attention_heads", 12)))
    NP = int(g("n_positions", raw.get("max_position_embeddings", 1024)))
    inner = g("n_inner", None)
    inner = 4 * E if inner is None else int(inner)
    eps = float(g("layer_norm_epsilon", 1e-5))
    act = _act(g("activation_function", "gelu_new"))
    scale_w = bool(g("scale_attn_weights", True))
    inv_layer = bool(g("scale_attn_by_inverse_layer_idx", False))
    tie = bool(g("tie_word_embeddings", True))
    hd = E // nH
    if hd * nH != E:
        raise RefError(f"n_embd {E} not divisible by n_head {nH}")
    B, T = ids.shape
    if int(pos.max()) >= NP or int(pos.min()) < 0:
        raise RefError(f"position ids must lie in [0, {NP})")

    W.set_aliases(["transformer."])
    wte = W.get("wte.weight", [V, E])
    wpe = W.get("wpe.weight", [NP, E])
    h = wte[ids] + wpe[pos]
    segments = packed_segments(pos) if packed else None
    mask = build_mask(T, None, segments)
    for li in range(L):
        p = f"h.{li}."
        x = layer_norm(h, W.get(p + "ln_1.weight", [E]), W.get(p + "ln_1.bias", [E]), eps)
        # Conv1D: weight stored [in, out], y = x @ W + b
        qkv = x @ W.get(p + "attn.c_attn.weight", [E, 3 * E]) + W.get(p + "attn.c_attn.bias", [3 * E])
        q, k, v = qkv.split(E, dim=-1)
        q = q.view(B, T, nH, hd).transpose(1, 2)
        k = k.view(B, T, nH, hd).transpose(1, 2)
        v = v.view(B, T, nH, hd).transpose(1, 2)
        scaling = 1.0
        if scale_w:
            scaling = scaling / (hd ** 0.5)  # attn_weights / value.size(-1) ** 0.5
        if inv_layer:
            scaling = scaling / float(li + 1)
        a = attention(q, k, v, mask, scaling, None)
        a = a @ W.get(p + "attn.c_proj.weight", [E, E]) + W.get(p + "attn.c_proj.bias", [E])
        h = h + a
        x = layer_norm(h, W.get(p + "ln_2.weight", [E]), W.get(p + "ln_2.bias", [E]), eps)
        m = act(x @ W.get(p + "mlp.c_fc.weight", [E, inner]) + W.get(p + "mlp.c_fc.bias", [inner]))
        m = m @ W.get(p + "mlp.c_proj.weight", [inner, E]) + W.get(p + "mlp.c_proj.bias", [E])
        h = h + m
    h = layer_norm(h, W.get("ln_f.weight", [E]), W.get("ln_f.bias", [E]), eps)
    if tie or not W.has("lm_head.weight"):
        head = wte
        W.mark_ignored("lm_head.weight")
    else:
        head = W.get("lm_head.weight", [V, E])
    logits = h @ head.t()
    W.check_all_used(["attn.bias", "attn.masked_bias"])
    return logits


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

def run(req):
    model_dir = req.get("model_dir")
    if not model_dir:
        raise RefError("request lacks model_dir")
    out = req.get("out")
    if not out:
        raise RefError("request lacks out")
    dts = req.get("dtype", "float64")
    if dts not in ("float32", "float64"):
        raise RefError(f"dtype must be float32 or float64, got {dts!r}")
    dt = torch.float32 if dts == "float32" else torch.float64

    rows = req.get("input_ids")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) and r for r in rows):
        raise RefError("input_ids must be a non-empty list of non-empty lists")
    T = len(rows[0])
    if any(len(r) != T for r in rows):
        raise RefError("input_ids rows differ in length")
    ids = torch.tensor(rows, dtype=torch.int64)
    B = ids.shape[0]
    if req.get("position_ids") is not None:
        pos = torch.tensor(req["position_ids"], dtype=torch.int64)
        if pos.dim() != 2 or pos.shape[1] != T or pos.shape[0] not in (1, B):
            raise RefError(f"position_ids must be [{B} or 1, {T}], got {list(pos.shape)}")
        pos = pos.expand(B, T).contiguous()
        if int(pos.min()) < 0:
            raise RefError("position_ids must be non-negative")
    else:
        pos = torch.arange(T, dtype=torch.int64)[None].expand(B, T).contiguous()
    packed = bool(req.get("packed_sequences", False))

    with open(os.path.join(model_dir, "config.json")) as fh:
        raw = json.load(fh)
    mt = raw.get("model_type")
    if mt not in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "gpt2"):
        raise RefError(f"unsupported model_type {mt!r}")
    V = int(raw.get("vocab_size", 0) or 0)
    if V and (int(ids.min()) < 0 or int(ids.max()) >= V):
        raise RefError(f"input_ids must lie in [0, {V})")

    W = Weights(model_dir, dt)
    with torch.no_grad():
        if mt == "gpt2":
            logits = forward_gpt2(raw, W, ids, pos, dt, packed)
        else:
            logits = forward_decoder(mt, raw, W, ids, pos, dt, packed)
    arr = logits.to(torch.float32).contiguous().numpy().astype("<f4", copy=False)
    d = os.path.dirname(os.path.abspath(out))
    os.makedirs(d, exist_ok=True)
    arr.tofile(out)
    return list(arr.shape)


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: hf_forward.py REQUEST.json\n")
        return 2
    try:
        with open(argv[1]) as fh:
            req = json.load(fh)
        torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
        shape = run(req)
    except RefError as e:
        sys.stderr.write(f"hf_forward: {e}\n")
        return 1
    except Exception as e:  # noqa: BLE001
        sys.stderr.write(f"hf_forward: {type(e).__name__}: {e}\n")
        return 1
    sys.stdout.write(json.dumps({"shape": shape}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
