using System.Text.Json.Nodes;

namespace Research.Models;

/// <summary>How a family normalises: RMSNorm x·w (Llama), RMSNorm x·(1 + w) (Gemma), LayerNorm with bias (GPT-2).</summary>
public enum NormKind { Rms, RmsOffset, Layer }

/// <summary>Feed-forward shape: gated (down(act(gate x) · up x)) with separate or fused gate/up weights, or plain (proj(act(fc x))).</summary>
public enum MlpKind { Gated, GatedFused, Plain }

/// <summary>The checkpoint names of a family's modules: the model's submodules are registered under them, so
/// <c>named_parameters()</c> are the Hugging Face keys (GPT-2's Conv1D weights aside, stored transposed).</summary>
public sealed record FamilyNames
{
    public string Root { get; init; } = "model";
    public string Embed { get; init; } = "embed_tokens";
    public string Positions { get; init; } = "";
    public string Layers { get; init; } = "layers";
    public string FinalNorm { get; init; } = "norm";
    public string Attention { get; init; } = "self_attn";
    public string Mlp { get; init; } = "mlp";
    public string InputNorm { get; init; } = "input_layernorm";
    public string PostAttentionNorm { get; init; } = "post_attention_layernorm";
    public string PreFeedforwardNorm { get; init; } = "pre_feedforward_layernorm";
    public string PostFeedforwardNorm { get; init; } = "post_feedforward_layernorm";
    public string Q { get; init; } = "q_proj";
    public string K { get; init; } = "k_proj";
    public string V { get; init; } = "v_proj";
    public string Qkv { get; init; } = "qkv_proj";
    public string O { get; init; } = "o_proj";
    public string QNorm { get; init; } = "q_norm";
    public string KNorm { get; init; } = "k_norm";
    public string Gate { get; init; } = "gate_proj";
    public string Up { get; init; } = "up_proj";
    public string GateUp { get; init; } = "gate_up_proj";
    public string Down { get; init; } = "down_proj";
    public string Fc { get; init; } = "c_fc";
    public string Proj { get; init; } = "c_proj";
}

/// <summary>
/// One model family as the decoder needs it: which norm, MLP, attention layout and extras it uses, its checkpoint
/// names, and the defaults its Hugging Face configuration class fills in for keys a config.json leaves out.
/// The decoder (<see cref="CausalLM"/>) exists once; a family is only this description.
/// </summary>
public sealed record Family
{
    public required string ModelType { get; init; }
    public required string Architecture { get; init; }
    public NormKind Norm { get; init; } = NormKind.Rms;
    public MlpKind Mlp { get; init; } = MlpKind.Gated;
    /// <summary>q, k and v as one linear (Phi-3 qkv_proj, GPT-2 c_attn): rows q, then k, then v.</summary>
    public bool FusedQkv { get; init; }
    /// <summary>Biases on q, k, v (and o) follow config.json's attention_bias, unless the family fixes them (Qwen2: q/k/v yes, o no).</summary>
    public bool? QkvBias { get; init; }
    public bool? OutputBias { get; init; }
    /// <summary>Per-head RMSNorm of q and k over head_dim, before RoPE (Qwen3, Gemma 3).</summary>
    public bool QkNorm { get; init; }
    /// <summary>Norms after attention and around the MLP too (Gemma 2 and 3).</summary>
    public bool SandwichNorms { get; init; }
    /// <summary>Embeddings times sqrt(hidden_size), the factor rounded to the hidden dtype (Gemma).</summary>
    public bool ScaleEmbeddings { get; init; }
    /// <summary>Learned absolute positions added to the embeddings, no RoPE (GPT-2).</summary>
    public bool LearnedPositions { get; init; }
    /// <summary>Biases on every linear and norm (GPT-2).</summary>
    public bool AllBiases { get; init; }
    /// <summary>Last name segments of linears stored as Conv1D, [in, out], in the checkpoint (GPT-2).</summary>
    public IReadOnlyList<string> ConvWeights { get; init; } = [];
    /// <summary>Buffers HF checkpoints may carry that the model derives (rotary tables, GPT-2's causal mask).</summary>
    public IReadOnlyList<string> IgnorableSuffixes { get; init; } = ["rotary_emb.inv_freq"];
    public FamilyNames Names { get; init; } = new();
    /// <summary>Config keys of the HF configuration class's defaults, used when config.json leaves them out.</summary>
    public JsonObject Defaults { get; init; } = new();
    /// <summary>HF config keys renamed to the Llama names <see cref="ModelConfig"/> reads (GPT-2's n_embd...).</summary>
    public IReadOnlyDictionary<string, string> KeyAliases { get; init; } = new Dictionary<string, string>();
    /// <summary>Which layers attend through a sliding window, by the family's own rule (layer_types wins when config.json has it).</summary>
    public Func<ModelConfig, int, bool> IsSliding { get; init; } = (_, _) => false;
    /// <summary>Gemma 3: sliding layers use RoPE at rope_local_base_freq without scaling.</summary>
    public bool LocalRopeBase { get; init; }
    /// <summary>The MLP activation is read from hidden_activation (Gemma 2/3) rather than hidden_act (every other family, Gemma 1 too).</summary>
    public bool ActivationFromHiddenActivation { get; init; }
    /// <summary>attn_logit_softcapping is applied (Gemma 2; Gemma 3's config carries the key but its attention ignores it).</summary>
    public bool AttentionSoftcap { get; init; }
    /// <summary>final_logit_softcapping is applied (Gemma 2 and 3).</summary>
    public bool FinalSoftcap { get; init; }

    public override string ToString() => ModelType;
}

/// <summary>The families <see cref="Checkpoint.Load"/> reads, by config.json's model_type.</summary>
public static class Families
{
    static JsonObject Obj(params (string Key, JsonNode? Value)[] kv)
    {
        var o = new JsonObject();
        foreach (var (k, v) in kv) o[k] = v;
        return o;
    }

    static bool Window(ModelConfig c) => c.SlidingWindow is > 0;

    public static Family Llama { get; } = new()
    {
        ModelType = "llama", Architecture = "LlamaForCausalLM",
        Defaults = Obj(("vocab_size", 32000), ("hidden_size", 4096), ("intermediate_size", 11008), ("num_hidden_layers", 32),
                       ("num_attention_heads", 32), ("rms_norm_eps", 1e-6), ("rope_theta", 10000.0), ("tie_word_embeddings", false), ("max_position_embeddings", 2048),
                       ("hidden_act", "silu")),
    };

    public static Family Mistral { get; } = Llama with
    {
        ModelType = "mistral", Architecture = "MistralForCausalLM",
        Defaults = Obj(("rms_norm_eps", 1e-6), ("rope_theta", 10000.0), ("tie_word_embeddings", false), ("max_position_embeddings", 4096 * 32),
                       ("hidden_act", "silu"), ("sliding_window", 4096)),
        IsSliding = (c, _) => Window(c),
    };

    /// <summary>Qwen2 and Qwen3: a window only with use_sliding_window, and then from layer max_window_layers on.</summary>
    static bool QwenSliding(ModelConfig c, int layer) => c.UseSlidingWindow == true && Window(c) && layer >= (c.MaxWindowLayers ?? 28);

    public static Family Qwen2 { get; } = Llama with
    {
        ModelType = "qwen2", Architecture = "Qwen2ForCausalLM", QkvBias = true, OutputBias = false,
        Defaults = Obj(("rms_norm_eps", 1e-6), ("rope_theta", 10000.0), ("tie_word_embeddings", false), ("max_position_embeddings", 32768),
                       ("hidden_act", "silu"), ("use_sliding_window", false), ("sliding_window", 4096), ("max_window_layers", 28)),
        IsSliding = QwenSliding,
    };

    public static Family Qwen3 { get; } = Qwen2 with
    {
        ModelType = "qwen3", Architecture = "Qwen3ForCausalLM", QkvBias = null, OutputBias = null, QkNorm = true,
        Defaults = Obj(("rms_norm_eps", 1e-6), ("rope_theta", 10000.0), ("tie_word_embeddings", false), ("max_position_embeddings", 32768),
                       ("hidden_act", "silu"), ("use_sliding_window", false), ("sliding_window", 4096), ("max_window_layers", 28), ("head_dim", 128)),
    };

    public static Family Gemma { get; } = Llama with
    {
        ModelType = "gemma", Architecture = "GemmaForCausalLM", Norm = NormKind.RmsOffset, ScaleEmbeddings = true,
        Defaults = Obj(("rms_norm_eps", 1e-6), ("rope_theta", 10000.0), ("tie_word_embeddings", true), ("max_position_embeddings", 8192),
                       ("hidden_act", "gelu_pytorch_tanh"), ("head_dim", 256)),
    };

    /// <summary>Gemma 2: even layers (0, 2, ...) slide, odd ones attend globally.</summary>
    public static Family Gemma2 { get; } = Gemma with
    {
        ModelType = "gemma2", Architecture = "Gemma2ForCausalLM", SandwichNorms = true,
        ActivationFromHiddenActivation = true, AttentionSoftcap = true, FinalSoftcap = true,
        Defaults = Obj(("rms_norm_eps", 1e-6), ("rope_theta", 10000.0), ("tie_word_embeddings", true), ("max_position_embeddings", 8192),
                       ("hidden_act", "gelu_pytorch_tanh"), ("hidden_activation", "gelu_pytorch_tanh"), ("head_dim", 256),
                       ("query_pre_attn_scalar", 256), ("sliding_window", 4096), ("attn_logit_softcapping", 50.0), ("final_logit_softcapping", 30.0)),
        IsSliding = (c, i) => Window(c) && i % 2 == 0,
    };

    /// <summary>Gemma 3: every sliding_window_pattern-th layer (6th by default) is global, the rest slide, with their own RoPE base.</summary>
    public static Family Gemma3Text { get; } = Gemma2 with
    {
        ModelType = "gemma3_text", Architecture = "Gemma3ForCausalLM", QkNorm = true, LocalRopeBase = true, AttentionSoftcap = false,
        Defaults = Obj(("rms_norm_eps", 1e-6), ("rope_theta", 1_000_000.0), ("rope_local_base_freq", 10000.0), ("tie_word_embeddings", true),
                       ("max_position_embeddings", 131072), ("hidden_act", "gelu_pytorch_tanh"), ("hidden_activation", "gelu_pytorch_tanh"),
                       ("head_dim", 256), ("query_pre_attn_scalar", 256),
                       ("sliding_window", 4096), ("sliding_window_pattern", 6)),
        IsSliding = (c, i) => Window(c) && (i + 1) % (c.SlidingWindowPattern ?? 6) != 0,
    };

    public static Family Phi3 { get; } = Llama with
    {
        ModelType = "phi3", Architecture = "Phi3ForCausalLM", FusedQkv = true, Mlp = MlpKind.GatedFused,
        Defaults = Obj(("rms_norm_eps", 1e-5), ("rope_theta", 10000.0), ("tie_word_embeddings", false), ("max_position_embeddings", 4096),
                       ("hidden_act", "silu")),
        IsSliding = (c, _) => Window(c),
    };

    public static Family Gpt2 { get; } = new()
    {
        ModelType = "gpt2", Architecture = "GPT2LMHeadModel", Norm = NormKind.Layer, Mlp = MlpKind.Plain, FusedQkv = true,
        LearnedPositions = true, AllBiases = true, ConvWeights = ["c_attn", "c_proj", "c_fc"],
        IgnorableSuffixes = ["attn.bias", "attn.masked_bias"],
        Names = new FamilyNames
        {
            Root = "transformer", Embed = "wte", Positions = "wpe", Layers = "h", FinalNorm = "ln_f", Attention = "attn",
            InputNorm = "ln_1", PostAttentionNorm = "ln_2", Qkv = "c_attn", O = "c_proj",
        },
        KeyAliases = new Dictionary<string, string>
        {
            ["n_embd"] = "hidden_size", ["n_layer"] = "num_hidden_layers", ["n_head"] = "num_attention_heads",
            ["n_positions"] = "max_position_embeddings", ["n_inner"] = "intermediate_size",
            ["layer_norm_epsilon"] = "rms_norm_eps", ["activation_function"] = "hidden_act",
        },
        Defaults = Obj(("vocab_size", 50257), ("n_positions", 1024), ("n_embd", 768), ("n_layer", 12), ("n_head", 12),
                       ("layer_norm_epsilon", 1e-5), ("activation_function", "gelu_new"), ("tie_word_embeddings", true),
                       ("bos_token_id", 50256), ("eos_token_id", 50256)),
    };

    public static IReadOnlyList<Family> All { get; } = [Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma2, Gemma3Text, Phi3, Gpt2];

    public static Family? TryGet(string modelType) => All.FirstOrDefault(f => f.ModelType == modelType);

    public static Family Get(string modelType, string? where = null) =>
        TryGet(modelType) ?? throw new InvalidDataException(
            $"{(where is null ? "" : where + ": ")}model_type '{modelType}' is not supported (supported: {string.Join(", ", All.Select(f => f.ModelType))})");
}
