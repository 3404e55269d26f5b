using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Models;

// The whole decoder in one file, read top-down: norm, rotary embedding, KV cache, attention, MLP, block, model.
// One implementation serves every family (Llama, Mistral, Qwen2/3, Gemma 1/2/3, Phi-3, GPT-2): a Family says which
// norm, MLP and attention layout to build and under which names, so named_parameters() are the Hugging Face checkpoint
// keys (model.layers.0.self_attn.q_proj.weight) and loading is a loop that checks every shape. The model returns
// logits; losses live with the stages. Every linear goes through Lora.Forward, which adds an attached LoRA adapter's
// update (none by default).

/// <summary>RMSNorm x / sqrt(mean(x^2) + eps) · w (Llama), the same · (1 + w) (Gemma), both in fp32; or LayerNorm with bias (GPT-2).</summary>
public sealed class Norm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? bias;
    readonly double eps;
    readonly NormKind kind;

    public Norm(int dim, double eps, NormKind kind) : base("Norm")
    {
        weight = nn.Parameter(kind == NormKind.RmsOffset ? zeros(dim) : ones(dim));
        bias = kind == NormKind.Layer ? nn.Parameter(zeros(dim)) : null;
        (this.eps, this.kind) = (eps, kind);
        RegisterComponents();
    }

    public NormKind Kind => kind;

    public override Tensor forward(Tensor x)
    {
        if (kind == NormKind.Layer) return F.layer_norm(x, [x.shape[^1]], weight, bias, eps);
        using var scope = NewDisposeScope();
        var x32 = x.to(float32);
        // x * x, not pow(2): the same value, and its backward is one product where pow's is a power and two products.
        var normed = x32 * rsqrt((x32 * x32).mean([-1L], keepdim: true) + eps);
        var y = kind == NormKind.Rms ? normed.to(x.dtype) * weight : (normed * (weight.to(float32) + 1.0)).to(x.dtype);
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Rotary position embedding, Hugging Face "rotate half" layout (first half / second half of the rotated dims):
/// x cos + rotate_half(x) sin with rotate_half(x) = (-x2, x1). Written as x cos + (x2, x1) sin' with the sign folded into
/// the table, sin' = (-sin, sin) over the two halves (bit-identical: negation is exact), and applied in the projections'
/// own (B, T, heads, hd) layout, before heads are transposed out. With a partial rotary factor only the first
/// dims rotate and the rest pass through (Phi-3).
/// </summary>
public static class Rope
{
    /// <summary>cos and the signed sin' of shape (B or 1, T, 1, rotary dim) for integer positions of shape (B, T) or (T).</summary>
    public static (Tensor Cos, Tensor Sin) Tables(Tensor positions, RopeSpec spec, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var pos = positions.dim() == 1 ? positions.unsqueeze(0) : positions;                                 // (B, T)
        var seqLen = spec.Dynamic ? (int)pos.max().item<long>() + 1 : 0;
        var (inv, attention) = spec.Compute(seqLen);
        var invFreq = tensor(inv.Select(f => (float)f).ToArray(), device: positions.device);               // (rd/2)
        var angles = (pos.to(float32).unsqueeze(-1) * invFreq).unsqueeze(2);                               // (B, T, 1, rd/2)
        var cos = angles.cos();
        var sin = angles.sin();
        if (attention != 1.0) { cos = cos * attention; sin = sin * attention; }
        return (cat([cos, cos], -1).to(dtype).MoveToOuterDisposeScope(), cat([-sin, sin], -1).to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>Plain RoPE at base <paramref name="theta"/> over all <paramref name="headDim"/> dims.</summary>
    public static (Tensor Cos, Tensor Sin) Tables(Tensor positions, int headDim, double theta, ScalarType dtype) =>
        Tables(positions, new RopeSpec(theta, headDim, null, int.MaxValue), dtype);

    /// <param name="x">(B, T, h, hd): heads not yet transposed.</param>
    /// <param name="cos">From <see cref="Tables(Tensor, RopeSpec, ScalarType)"/>.</param>
    /// <param name="sin">The signed sin' from the same.</param>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        var rot = cos.shape[^1];
        if (rot < x.shape[^1])
            return cat([Apply(x.narrow(-1, 0, rot), cos, sin), x.narrow(-1, rot, x.shape[^1] - rot)], -1);
        var half = rot / 2;
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

/// <summary>What one forward pass hands every layer: its RoPE tables and its attention mask (null = plain causal).</summary>
public sealed record LayerInputs(Tensor? Cos, Tensor? Sin, Tensor? Mask);

/// <summary>Grouped-query self-attention: SDPA, or explicit scores where the family soft-caps them (Gemma 2).</summary>
public sealed class Attention : nn.Module
{
    readonly Linear? q, k, v, qkv;
    readonly Linear o;
    readonly Norm? qNorm, kNorm;
    readonly int nHeads, nKv, headDim;
    readonly double scale;
    readonly double? softcap;


    /// <summary>Submodules are registered under the family's checkpoint names, not under their field names.</summary>
    protected override void RegisterComponents() { }
    public Attention(ModelConfig c) : base("Attention")
    {
        var f = c.Family;
        var n = f.Names;
        nHeads = c.NumAttentionHeads; nKv = c.NumKeyValueHeads; headDim = c.HeadDim;
        var qkvBias = f.AllBiases || (f.QkvBias ?? c.AttentionBias);
        var oBias = f.AllBiases || (f.OutputBias ?? c.AttentionBias);
        if (f.FusedQkv) register_module(n.Qkv, qkv = nn.Linear(c.HiddenSize, (nHeads + 2 * nKv) * headDim, hasBias: qkvBias));
        else
        {
            register_module(n.Q, q = nn.Linear(c.HiddenSize, nHeads * headDim, hasBias: qkvBias));
            register_module(n.K, k = nn.Linear(c.HiddenSize, nKv * headDim, hasBias: qkvBias));
            register_module(n.V, v = nn.Linear(c.HiddenSize, nKv * headDim, hasBias: qkvBias));
        }
        register_module(n.O, o = nn.Linear(nHeads * headDim, c.HiddenSize, hasBias: oBias));
        if (f.QkNorm)
        {
            register_module(n.QNorm, qNorm = new Norm(headDim, c.RmsNormEps, f.Norm));
            register_module(n.KNorm, kNorm = new Norm(headDim, c.RmsNormEps, f.Norm));
        }
        scale = c.QueryPreAttnScalar is { } s ? 1.0 / Math.Sqrt(s) : 1.0 / Math.Sqrt(headDim);
        softcap = f.AttentionSoftcap ? c.AttnLogitSoftcapping : null;
    }

    public Tensor Forward(Tensor x, LayerInputs inputs, KvCache? cache, int layer)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        Tensor qh, kh, vh;
        if (qkv is not null)
        {
            var parts = Lora.Forward(qkv, x).split([nHeads * headDim, nKv * headDim, nKv * headDim], -1);
            (qh, kh, vh) = (parts[0], parts[1], parts[2]);
        }
        else
        {
            var parts = Lora.ForwardStacked([q!, k!, v!], x);
            (qh, kh, vh) = (parts[0], parts[1], parts[2]);
        }
        qh = qh.view(b, t, nHeads, headDim);                                     // (B, T, nh, hd)
        kh = kh.view(b, t, nKv, headDim);                                        // (B, T, kvh, hd)
        if (qNorm is not null) { qh = qNorm.forward(qh); kh = kNorm!.forward(kh); }
        if (inputs.Cos is not null) { qh = Rope.Apply(qh, inputs.Cos, inputs.Sin!); kh = Rope.Apply(kh, inputs.Cos, inputs.Sin!); }
        qh = qh.transpose(1, 2);                                                 // (B, nh, T, hd)
        kh = kh.transpose(1, 2);                                                 // (B, kvh, T, hd)
        vh = vh.view(b, t, nKv, headDim).transpose(1, 2);                        // (B, kvh, T, hd)
        var past = cache?.Length ?? 0;
        if (cache is not null) (kh, vh) = cache.Append(layer, kh, vh);           // (B, kvh, past+T, hd)
        if (nKv != nHeads)
        {
            kh = kh.repeat_interleave(nHeads / nKv, dim: 1);                     // (B, nh, S, hd)
            vh = vh.repeat_interleave(nHeads / nKv, dim: 1);
        }
        var y = softcap is { } cap ? Explicit(qh, kh, vh, inputs.Mask, t, past, cap) : Sdpa(qh, kh, vh, inputs.Mask, t, past);
        y = y.transpose(1, 2).contiguous().view(b, t, nHeads * headDim);         // (B, T, C)
        return Lora.Forward(o, y);
    }

    Tensor Sdpa(Tensor qh, Tensor kh, Tensor vh, Tensor? mask, long t, long past)
    {
        // SDPA scales by head_dim^-1/2; a family with its own scale (query_pre_attn_scalar) pre-scales q.
        var fix = scale * Math.Sqrt(headDim);
        if (Math.Abs(fix - 1.0) > 1e-12) qh = qh * fix;
        if (mask is not null) return F.scaled_dot_product_attention(qh, kh, vh, attn_mask: mask);
        if (past == 0) return F.scaled_dot_product_attention(qh, kh, vh, is_casual: true);
        if (t == 1) return F.scaled_dot_product_attention(qh, kh, vh);           // one new token sees all the past
        return F.scaled_dot_product_attention(qh, kh, vh, attn_mask: Masks.Causal(t, past, qh.device));
    }

    /// <summary>softmax(cap · tanh(q kᵀ · scale / cap) masked) v, the softmax in fp32 (Gemma 2's eager attention).</summary>
    Tensor Explicit(Tensor qh, Tensor kh, Tensor vh, Tensor? mask, long t, long past, double cap)
    {
        var scores = qh.matmul(kh.transpose(-2, -1)) * scale;                    // (B, nh, T, S)
        scores = (scores / cap).tanh() * cap;
        var allowed = mask ?? Masks.Causal(t, past, qh.device);
        scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        var probs = scores.to(float32).softmax(-1).to(qh.dtype);
        return probs.matmul(vh);
    }
}

/// <summary>Boolean attention masks, true = may attend.</summary>
public static class Masks
{
    /// <summary>(1, 1, T, past+T): query i (at position past+i) sees keys 0..past+i.</summary>
    public static Tensor Causal(long t, long past, Device device) =>
        ones(t, past + t, dtype: @bool, device: device).tril(past).view(1, 1, t, past + t);

    /// <summary>(1, 1, T, past+T): causal, and key j within the last <paramref name="window"/> positions of query i (i - window &lt; j).</summary>
    public static Tensor SlidingWindow(long t, long past, int window, Device device)
    {
        using var all = ones(t, past + t, dtype: @bool, device: device);
        using var causal = all.tril(past);
        using var recent = all.triu(past - window + 1);
        return causal.logical_and(recent).view(1, 1, t, past + t);
    }
}

/// <summary>Feed-forward: down(act(gate x) · up x), with gate and up separate or fused (Phi-3), or proj(act(fc x)) (GPT-2).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    readonly Linear? gate, up, gateUp, fc;
    readonly Linear down;
    readonly string act;


    /// <summary>Submodules are registered under the family's checkpoint names, not under their field names.</summary>
    protected override void RegisterComponents() { }
    public Mlp(ModelConfig c) : base("Mlp")
    {
        var f = c.Family;
        var n = f.Names;
        var bias = f.AllBiases || c.MlpBias;
        act = c.Activation;
        switch (f.Mlp)
        {
            case MlpKind.Gated:
                register_module(n.Gate, gate = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: bias));
                register_module(n.Up, up = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: bias));
                register_module(n.Down, down = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: bias));
                break;
            case MlpKind.GatedFused:
                register_module(n.GateUp, gateUp = nn.Linear(c.HiddenSize, 2 * c.IntermediateSize, hasBias: bias));
                register_module(n.Down, down = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: bias));
                break;
            default:
                register_module(n.Fc, fc = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: bias));
                register_module(n.Proj, down = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: bias));
                break;
        }
    }

    public override Tensor forward(Tensor x)
    {
        if (fc is not null) return Lora.Forward(down, Activate(Lora.Forward(fc, x), act));
        if (gateUp is not null)
        {
            var parts = Lora.Forward(gateUp, x).chunk(2, -1);                    // gate first, up second
            return Lora.Forward(down, Activate(parts[0], act) * parts[1]);
        }
        var gu = Lora.ForwardStacked([gate!, up!], x);
        return Lora.Forward(down, Activate(gu[0], act) * gu[1]);
    }

    /// <summary>silu, relu, exact gelu, or the tanh approximation 0.5 x (1 + tanh(sqrt(2/π)(x + 0.044715 x³))) HF calls gelu_new / gelu_pytorch_tanh.</summary>
    public static Tensor Activate(Tensor x, string act) => act switch
    {
        "silu" => F.silu(x),
        "relu" => F.relu(x),
        "gelu" => F.gelu(x),
        "gelu_pytorch_tanh" or "gelu_new" or "gelu_fast" => x * 0.5 * (1.0 + ((x + x * x * x * 0.044715) * Math.Sqrt(2.0 / Math.PI)).tanh()),
        _ => throw new ArgumentException($"activation '{act}' is not supported (supported: {string.Join(", ", ModelConfig.Activations)})"),
    };
}

/// <summary>Pre-norm block: x + attn(norm(x)), then + mlp(norm(x)); Gemma 2/3 also norm each branch's output.</summary>
public sealed class DecoderLayer : nn.Module
{
    readonly Attention attn;
    readonly Mlp mlp;
    readonly Norm inputNorm, postAttentionNorm;
    readonly Norm? preFeedforwardNorm, postFeedforwardNorm;


    /// <summary>Submodules are registered under the family's checkpoint names, not under their field names.</summary>
    protected override void RegisterComponents() { }
    public DecoderLayer(ModelConfig c) : base("DecoderLayer")
    {
        var f = c.Family;
        var n = f.Names;
        register_module(n.Attention, attn = new Attention(c));
        register_module(n.Mlp, mlp = new Mlp(c));
        register_module(n.InputNorm, inputNorm = new Norm(c.HiddenSize, c.RmsNormEps, f.Norm));
        register_module(n.PostAttentionNorm, postAttentionNorm = new Norm(c.HiddenSize, c.RmsNormEps, f.Norm));
        if (f.SandwichNorms)
        {
            register_module(n.PreFeedforwardNorm, preFeedforwardNorm = new Norm(c.HiddenSize, c.RmsNormEps, f.Norm));
            register_module(n.PostFeedforwardNorm, postFeedforwardNorm = new Norm(c.HiddenSize, c.RmsNormEps, f.Norm));
        }
    }

    public Tensor Forward(Tensor x, LayerInputs inputs, KvCache? cache, int layer)
    {
        if (preFeedforwardNorm is null)
        {
            var h = x + attn.Forward(inputNorm.forward(x), inputs, cache, layer);
            return h + mlp.forward(postAttentionNorm.forward(h));
        }
        var h2 = x + postAttentionNorm.forward(attn.Forward(inputNorm.forward(x), inputs, cache, layer));
        return h2 + postFeedforwardNorm!.forward(mlp.forward(preFeedforwardNorm.forward(h2)));
    }
}

/// <summary>Embeddings, the stack of blocks and the final norm (HF "model.*", GPT-2's "transformer.*").</summary>
public sealed class DecoderStack : nn.Module
{
    internal readonly Embedding embed;
    internal readonly Embedding? positions;
    readonly ModuleList<DecoderLayer> layers;
    readonly Norm norm;


    /// <summary>Submodules are registered under the family's checkpoint names, not under their field names.</summary>
    protected override void RegisterComponents() { }
    public DecoderStack(ModelConfig c) : base("DecoderStack")
    {
        var f = c.Family;
        var n = f.Names;
        register_module(n.Embed, embed = nn.Embedding(c.VocabSize, c.HiddenSize));
        if (f.LearnedPositions) register_module(n.Positions, positions = nn.Embedding(c.MaxPositionEmbeddings, c.HiddenSize));
        register_module(n.Layers, layers = nn.ModuleList(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new DecoderLayer(c)).ToArray()));
        register_module(n.FinalNorm, norm = new Norm(c.HiddenSize, c.RmsNormEps, f.Norm));
    }

    public Tensor Forward(Tensor embeddings, Func<int, LayerInputs> inputs, KvCache? cache)
    {
        var x = embeddings;
        for (int i = 0; i < layers.Count; i++) x = layers[i].Forward(x, inputs(i), cache, i);
        return norm.forward(x);
    }
}

/// <summary>The causal language model of any supported family: token ids (B, T) to logits (B, T, V).</summary>
public sealed class CausalLM : nn.Module
{
    readonly DecoderStack stack;
    readonly Linear? lm_head;
    readonly Linear? score;
    readonly RopeSpec? globalRope, localRope;

    /// <summary>Submodules are registered under the family's checkpoint names, not under their field names.</summary>
    protected override void RegisterComponents() { }
    public ModelConfig Config { get; }
    public Family Family { get; }

    /// <param name="seed">Seed of the initial weights, drawn from a generator of their own, so the same seed
    /// gives the same model whatever else uses torch's global generator. Null: the global generator.</param>
    public CausalLM(ModelConfig config, long? seed = null) : base("CausalLM")
    {
        Config = config.Validate();
        ModelMemory.EnsureFits(config, 4, "in float32 before training");                   // before anything is allocated
        Family = config.Family;
        register_module(Family.Names.Root, stack = new DecoderStack(config));
        if (!config.TieWordEmbeddings) register_module("lm_head", lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false));
        if (config.NumLabels is { } labels) register_module(SequenceClassification.HeadName, score = nn.Linear(config.HiddenSize, labels, hasBias: false));
        if (!Family.LearnedPositions)
        {
            var scaling = config.RopeScaling is { } rs && config.OriginalMaxPositionEmbeddings is { } om ? rs with { OriginalMaxPositionEmbeddings = om } : config.RopeScaling;
            globalRope = new RopeSpec(config.RopeTheta, config.RotaryDim, scaling, config.MaxPositionEmbeddings);
            localRope = Family.LocalRopeBase
                ? new RopeSpec(config.RopeLocalBaseFreq ?? 10000.0, config.RotaryDim, null, config.MaxPositionEmbeddings)
                : globalRope;
        }
        using var generator = seed is { } s ? new Generator((ulong)s) : null;
        InitWeights(generator);
    }

    /// <summary>Normal(0, initializer_range) for every matrix, zeros for biases; norms keep their own init (ones, or zeros for 1 + w).</summary>
    void InitWeights(Generator? generator)
    {
        using var _ = no_grad();
        var normParams = named_modules().Where(m => m.module is Norm).SelectMany(m => m.module.parameters()).ToHashSet();
        foreach (var (name, p) in named_parameters())
        {
            if (normParams.Contains(p)) continue;
            if (name.EndsWith(".bias")) p.zero_();
            else p.normal_(0.0, Config.InitializerRange, generator);
        }
    }

    public Tensor EmbeddingWeight => stack.embed.weight!;

    /// <summary>Token embeddings (B, T, C) as looked up; stages that perturb embeddings (NEFTune) start here.</summary>
    public Tensor Embed(Tensor inputIds) => stack.embed.forward(inputIds);

    /// <param name="inputIds">(B, T) int64 token ids.</param>
    /// <param name="positionIds">(B, T) or (T) positions; null = past .. past+T-1.</param>
    /// <param name="attentionMask">Boolean (B or 1, 1, T, S), true = may attend; null = causal.</param>
    public Tensor Forward(Tensor inputIds, Tensor? positionIds = null, Tensor? attentionMask = null, KvCache? cache = null) =>
        ForwardEmbeddings(Embed(inputIds), positionIds, attentionMask, cache);

    public Tensor ForwardEmbeddings(Tensor embeddings, Tensor? positionIds = null, Tensor? attentionMask = null, KvCache? cache = null)
    {
        using var scope = NewDisposeScope();
        return Head(HiddenEmbeddings(embeddings, positionIds, attentionMask, cache)).MoveToOuterDisposeScope();
    }

    /// <summary>Final hidden states (B, T, C), after the final norm, without the head: losses over a large vocabulary
    /// start here and apply <see cref="HeadWeight"/> a chunk of rows at a time (Training/ChunkedLoss).</summary>
    public Tensor Hidden(Tensor inputIds, Tensor? positionIds = null, Tensor? attentionMask = null) =>
        HiddenEmbeddings(Embed(inputIds), positionIds, attentionMask);

    /// <summary>The head's weight (V, C): lm_head's, or the tied token embedding's.</summary>
    public Tensor HeadWeight => lm_head?.weight ?? stack.embed.weight!;

    /// <summary>The cap of the final logits, cap · tanh(z / cap) (Gemma 2's final_logit_softcapping); null = none.</summary>
    public double? FinalLogitSoftcap => Family.FinalSoftcap ? Config.FinalLogitSoftcapping : null;

    /// <summary>Logits (B, T, V) of final hidden states (B, T, C): the head, then the final softcap if the family has one.</summary>
    public Tensor Head(Tensor hidden)
    {
        var logits = lm_head is null ? F.linear(hidden, stack.embed.weight!) : lm_head.forward(hidden);     // (B, T, V)
        if (FinalLogitSoftcap is { } cap) logits = (logits / cap).tanh() * cap;
        return logits;
    }

    /// <summary>Final hidden states (B, T, C) of embeddings (B, T, C); see <see cref="ForwardEmbeddings"/>.</summary>
    public Tensor HiddenEmbeddings(Tensor embeddings, Tensor? positionIds = null, Tensor? attentionMask = null, KvCache? cache = null)
    {
        using var scope = NewDisposeScope();
        var t = embeddings.shape[1];
        var past = cache?.Length ?? 0;
        var pos = positionIds ?? arange(past, past + t, dtype: int64, device: embeddings.device);
        var x = embeddings;
        if (Family.ScaleEmbeddings) x = x * tensor(Math.Sqrt(Config.HiddenSize), dtype: x.dtype, device: x.device);
        if (stack.positions is not null) x = x + stack.positions.forward(pos.dim() == 1 ? pos.unsqueeze(0) : pos);
        LayerInputs? global = null, local = null;
        if (globalRope is not null)
        {
            var (cos, sin) = Rope.Tables(pos, globalRope, x.dtype);
            global = new LayerInputs(cos, sin, attentionMask);
            if (!ReferenceEquals(localRope, globalRope))
            {
                var (lc, ls) = Rope.Tables(pos, localRope!, x.dtype);
                local = new LayerInputs(lc, ls, attentionMask);
            }
        }
        global ??= new LayerInputs(null, null, attentionMask);
        local ??= global;
        // A sliding layer's mask only differs from the causal one once the sequence outgrows its window.
        if (Config.SlidingWindow is { } w && past + t > w && Enumerable.Range(0, Config.NumHiddenLayers).Any(Config.IsSlidingLayer))
        {
            var band = Masks.SlidingWindow(t, past, w, x.device);
            local = local with { Mask = attentionMask is null ? band : attentionMask.logical_and(band) };
        }
        var h = stack.Forward(x, i => Config.IsSlidingLayer(i) ? local : global, cache);             // (B, T, C)
        cache?.Advance((int)t);
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>The sequence-classification head (<c>score</c>, no bias) when config.json has num_labels; else null.</summary>
    public Linear? ScoreHead => score;

    public long ParameterCount() => parameters().Sum(p => p.numel());
}
