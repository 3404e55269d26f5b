using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Models;

// The whole decoder in one file, read top-down: norm, rotary embedding, attention, MLP, block,
// model. Field names equal the Hugging Face checkpoint keys on purpose (model.layers.0.self_attn.q_proj.weight),
// so loading is a loop that checks every shape. The model returns logits; losses live with the stages.
// Every linear goes through Lora.Forward, which adds an attached LoRA adapter's update (none by default).
#pragma warning disable IDE1006 // field names are checkpoint keys

/// <summary>Root-mean-square norm: x / sqrt(mean(x^2) + eps) * weight, computed in fp32.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double eps;

    public RmsNorm(int dim, double eps) : base("RmsNorm")
    {
        weight = nn.Parameter(ones(dim));
        this.eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(float32);
        // x * x, not pow(2): the same value, and its backward is one product where pow's is a power and two products.
        var normed = x32 * rsqrt((x32 * x32).mean([-1L], keepdim: true) + eps);
        return (normed.to(x.dtype) * weight).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Rotary position embedding, Hugging Face "rotate half" layout (first half / second half of each head):
/// x cos + rotate_half(x) sin with rotate_half(x) = (-x2, x1). Written as x cos + (x2, x1) sin' with the sign folded into
/// the table, sin' = (-sin, sin) over the two halves (bit-identical: negation is exact), and applied in the projections'
/// own (B, T, heads, hd) layout, before heads are transposed out: contiguous rows, one op fewer.
/// </summary>
public static class Rope
{
    /// <summary>cos and the signed sin' of shape (B or 1, T, 1, hd) for integer positions of shape (B, T) or (T).</summary>
    public static (Tensor Cos, Tensor Sin) Tables(Tensor positions, int headDim, double theta, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var invFreq = pow(theta, -arange(0, headDim, 2, dtype: float32, device: positions.device) / headDim); // (hd/2)
        var pos = positions.dim() == 1 ? positions.unsqueeze(0) : positions;                                 // (B, T)
        var angles = (pos.to(float32).unsqueeze(-1) * invFreq).unsqueeze(2);                               // (B, T, 1, hd/2)
        var cos = angles.cos();
        var sin = angles.sin();
        return (cat([cos, cos], -1).to(dtype).MoveToOuterDisposeScope(), cat([-sin, sin], -1).to(dtype).MoveToOuterDisposeScope());
    }

    /// <param name="x">(B, T, h, hd): heads not yet transposed.</param>
    /// <param name="cos">From <see cref="Tables"/>.</param>
    /// <param name="sin">The signed sin' from <see cref="Tables"/>.</param>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        var half = x.shape[^1] / 2;
        var swapped = cat([x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
        return x * cos + swapped * sin;
    }
}

/// <summary>Keys and values of past positions, preallocated to the longest sequence, per layer.</summary>
public sealed class KvCache : IDisposable
{
    readonly Tensor[] _k, _v;
    public int Length { get; private set; }
    public int Capacity { get; }

    public KvCache(ModelConfig c, int batch, int capacity, ScalarType dtype, Device device)
    {
        Capacity = capacity;
        _k = new Tensor[c.NumHiddenLayers];
        _v = new Tensor[c.NumHiddenLayers];
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            _k[i] = zeros(batch, c.NumKeyValueHeads, capacity, c.HeadDim, dtype: dtype, device: device);
            _v[i] = zeros(batch, c.NumKeyValueHeads, capacity, c.HeadDim, dtype: dtype, device: device);
        }
    }

    /// <summary>Stores k, v (B, kvh, T, hd) after the cached positions and returns views of everything so far.</summary>
    public (Tensor K, Tensor V) Append(int layer, Tensor k, Tensor v)
    {
        var t = (int)k.shape[2];
        if (Length + t > Capacity)
            throw new InvalidOperationException($"KV cache full: {Length} + {t} positions > capacity {Capacity} (max_position_embeddings)");
        _k[layer].narrow(2, Length, t).copy_(k);
        _v[layer].narrow(2, Length, t).copy_(v);
        return (_k[layer].narrow(2, 0, Length + t), _v[layer].narrow(2, 0, Length + t));
    }

    /// <summary>Called once per forward, after every layer appended its t positions.</summary>
    public void Advance(int t) => Length += t;

    public void Dispose()
    {
        foreach (var t in _k) t.Dispose();
        foreach (var t in _v) t.Dispose();
    }
}

/// <summary>Grouped-query self-attention through scaled_dot_product_attention.</summary>
public sealed class LlamaAttention : nn.Module
{
    readonly Linear q_proj, k_proj, v_proj, o_proj;
    readonly int nHeads, nKv, headDim;

    public LlamaAttention(ModelConfig c) : base("LlamaAttention")
    {
        nHeads = c.NumAttentionHeads; nKv = c.NumKeyValueHeads; headDim = c.HeadDim;
        q_proj = nn.Linear(c.HiddenSize, nHeads * headDim, hasBias: c.AttentionBias);
        k_proj = nn.Linear(c.HiddenSize, nKv * headDim, hasBias: c.AttentionBias);
        v_proj = nn.Linear(c.HiddenSize, nKv * headDim, hasBias: c.AttentionBias);
        o_proj = nn.Linear(nHeads * headDim, c.HiddenSize, hasBias: c.AttentionBias);
        RegisterComponents();
    }

    /// <param name="mask">Boolean (B or 1, 1, T, S), true = may attend; null = causal.</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        var qkv = Lora.ForwardStacked([q_proj, k_proj, v_proj], x);
        var q = Rope.Apply(qkv[0].view(b, t, nHeads, headDim), cos, sin).transpose(1, 2);   // (B, nh, T, hd)
        var k = Rope.Apply(qkv[1].view(b, t, nKv, headDim), cos, sin).transpose(1, 2);      // (B, kvh, T, hd)
        var v = qkv[2].view(b, t, nKv, headDim).transpose(1, 2);                             // (B, kvh, T, hd)
        var past = cache?.Length ?? 0;
        if (cache is not null) (k, v) = cache.Append(layer, k, v);               // (B, kvh, past+T, hd)
        if (nKv != nHeads)
        {
            k = k.repeat_interleave(nHeads / nKv, dim: 1);                       // (B, nh, S, hd)
            v = v.repeat_interleave(nHeads / nKv, dim: 1);
        }
        Tensor y;
        if (mask is not null) y = F.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        else if (past == 0) y = F.scaled_dot_product_attention(q, k, v, is_casual: true);
        else if (t == 1) y = F.scaled_dot_product_attention(q, k, v);             // one new token sees all the past
        else y = F.scaled_dot_product_attention(q, k, v, attn_mask: CausalMask(t, past, x.device));
        y = y.transpose(1, 2).contiguous().view(b, t, nHeads * headDim);          // (B, T, C)
        return Lora.Forward(o_proj, y);
    }

    /// <summary>(1, 1, T, past+T): query i (at position past+i) sees keys 0..past+i.</summary>
    static Tensor CausalMask(long t, long past, Device device) =>
        ones(t, past + t, dtype: @bool, device: device).tril(past).view(1, 1, t, past + t);
}

/// <summary>SwiGLU feed-forward: down(silu(gate(x)) * up(x)).</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear gate_proj, up_proj, down_proj;

    public LlamaMlp(ModelConfig c) : base("LlamaMlp")
    {
        gate_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: c.MlpBias);
        up_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: c.MlpBias);
        down_proj = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: c.MlpBias);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var gateUp = Lora.ForwardStacked([gate_proj, up_proj], x);
        return Lora.Forward(down_proj, F.silu(gateUp[0]) * gateUp[1]);
    }
}

/// <summary>Pre-norm block: x + attn(norm(x)), then + mlp(norm(x)).</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    readonly LlamaAttention self_attn;
    readonly LlamaMlp mlp;
    readonly RmsNorm input_layernorm, post_attention_layernorm;

    public LlamaDecoderLayer(ModelConfig c) : base("LlamaDecoderLayer")
    {
        self_attn = new LlamaAttention(c);
        mlp = new LlamaMlp(c);
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer)
    {
        var h = x + self_attn.Forward(input_layernorm.forward(x), cos, sin, mask, cache, layer);
        return h + mlp.forward(post_attention_layernorm.forward(h));
    }
}

/// <summary>Embedding, the stack of blocks and the final norm (HF "model.*").</summary>
public sealed class LlamaModel : nn.Module
{
    internal readonly Embedding embed_tokens;
    readonly ModuleList<LlamaDecoderLayer> layers;
    readonly RmsNorm norm;

    public LlamaModel(ModelConfig c) : base("LlamaModel")
    {
        embed_tokens = nn.Embedding(c.VocabSize, c.HiddenSize);
        layers = nn.ModuleList(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new LlamaDecoderLayer(c)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps);
        RegisterComponents();
    }

    public Tensor Forward(Tensor embeddings, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache)
    {
        var x = embeddings;
        for (int i = 0; i < layers.Count; i++) x = layers[i].Forward(x, cos, sin, mask, cache, i);
        return norm.forward(x);
    }
}

/// <summary>The causal language model: token ids (B, T) to logits (B, T, V).</summary>
public sealed class CausalLM : nn.Module
{
    readonly LlamaModel model;
    readonly Linear? lm_head;
    public ModelConfig Config { get; }

    /// <param name="seed">Seed of the initial weights, drawn from a generator of their own, so the same seed
    /// gives the same model whatever else uses torch's global generator. Null: the global generator.</param>
    public CausalLM(ModelConfig config, long? seed = null) : base("CausalLM")
    {
        Config = config.Validate();
        model = new LlamaModel(config);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
        using var generator = seed is { } s ? new Generator((ulong)s) : null;
        InitWeights(generator);
    }

    /// <summary>Normal(0, initializer_range) for every matrix, ones for norms, zeros for biases (as HF Llama).</summary>
    void InitWeights(Generator? generator)
    {
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith("layernorm.weight") || name == "model.norm.weight") p.fill_(1.0);
            else if (name.EndsWith(".bias")) p.zero_();
            else p.normal_(0.0, Config.InitializerRange, generator);
        }
    }

    public Tensor EmbeddingWeight => model.embed_tokens.weight!;

    /// <summary>Token embeddings (B, T, C); stages that perturb embeddings (NEFTune) start here.</summary>
    public Tensor Embed(Tensor inputIds) => model.embed_tokens.forward(inputIds);

    /// <param name="inputIds">(B, T) int64 token ids.</param>
    /// <param name="positionIds">(B, T) or (T) positions; null = past .. past+T-1.</param>
    /// <param name="attentionMask">Boolean (B or 1, 1, T, S), true = may attend; null = causal.</param>
    public Tensor Forward(Tensor inputIds, Tensor? positionIds = null, Tensor? attentionMask = null, KvCache? cache = null) =>
        ForwardEmbeddings(Embed(inputIds), positionIds, attentionMask, cache);

    public Tensor ForwardEmbeddings(Tensor embeddings, Tensor? positionIds = null, Tensor? attentionMask = null, KvCache? cache = null)
    {
        var t = embeddings.shape[1];
        var past = cache?.Length ?? 0;
        using var pos = positionIds is null ? arange(past, past + t, dtype: int64, device: embeddings.device) : null;
        var (cos, sin) = Rope.Tables(positionIds ?? pos!, Config.HeadDim, Config.RopeTheta, embeddings.dtype);
        using (cos)
        using (sin)
        {
            var h = model.Forward(embeddings, cos, sin, attentionMask, cache);                       // (B, T, C)
            cache?.Advance((int)t);
            return lm_head is null ? F.linear(h, model.embed_tokens.weight!) : lm_head.forward(h);   // (B, T, V)
        }
    }

    public long ParameterCount() => parameters().Sum(p => p.numel());
}
#pragma warning restore IDE1006
