using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Research.Runs;

namespace Research.Models;

/// <summary>
/// A decoder's shape, with Hugging Face config.json field names (Llama's names; other families' keys are read through
/// their <see cref="Family"/>). Defaults describe the tiny byte-level model the quick start trains in minutes on two cores;
/// a config.json that leaves a key out gets its family's HF default instead (<see cref="Load"/>).
/// </summary>
public sealed record ModelConfig
{
    [JsonPropertyName("model_type")] public string ModelType { get; init; } = "llama";
    [JsonPropertyName("architectures")] public string[] Architectures { get; init; } = ["LlamaForCausalLM"];
    /// <summary>259 = the byte tokenizer (256 bytes + bos/eos/pad).</summary>
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; } = 259;
    /// <summary>128: the smallest width that still shows adaptation and forgetting clearly.</summary>
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 128;
    /// <summary>About 8/3 of hidden_size, as SwiGLU keeps the MLP's parameter count of a 4x GELU MLP.</summary>
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; init; } = 352;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; init; } = 4;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; init; } = 4;
    /// <summary>Fewer K/V heads than query heads = grouped-query attention (2 here: groups of 2).</summary>
    [JsonPropertyName("num_key_value_heads")] public int NumKeyValueHeads { get; init; } = 2;
    /// <summary>Longest sequence RoPE and the KV cache are sized for.</summary>
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; init; } = 256;
    /// <summary>The norm's epsilon (GPT-2's layer_norm_epsilon is read into it).</summary>
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-5;
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000.0;
    /// <summary>Tied: lm_head reuses embed_tokens (saves vocab x hidden parameters; HF omits lm_head.weight).</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; } = true;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "silu";
    /// <summary>Gemma's name for the MLP activation; wins over hidden_act when set.</summary>
    [JsonPropertyName("hidden_activation")] public string? HiddenActivation { get; init; }
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;
    [JsonPropertyName("attention_bias")] public bool AttentionBias { get; init; }
    [JsonPropertyName("mlp_bias")] public bool MlpBias { get; init; }
    /// <summary>Null: hidden_size / num_attention_heads.</summary>
    [JsonPropertyName("head_dim")] public int? HeadDimOverride { get; init; }
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; init; } = 256;
    [JsonPropertyName("eos_token_id")] public int? EosTokenId { get; init; } = 257;
    [JsonPropertyName("pad_token_id")] public int? PadTokenId { get; init; } = 258;
    [JsonPropertyName("torch_dtype")] public string TorchDtype { get; init; } = "float32";

    /// <summary>Scaled RoPE (linear, dynamic, llama3, yarn); null = plain RoPE.</summary>
    [JsonPropertyName("rope_scaling")] public RopeScaling? RopeScaling { get; init; }
    /// <summary>Phi-3 style top-level pretraining context; wins over rope_scaling's own for YaRN's correction range.</summary>
    [JsonPropertyName("original_max_position_embeddings")] public int? OriginalMaxPositionEmbeddings { get; init; }
    /// <summary>Share of head_dim that RoPE rotates (the rest passes through); null = all.</summary>
    [JsonPropertyName("partial_rotary_factor")] public double? PartialRotaryFactor { get; init; }
    /// <summary>Keys a sliding-window layer sees: the last sliding_window positions, its own included.</summary>
    [JsonPropertyName("sliding_window")] public int? SlidingWindow { get; init; }
    [JsonPropertyName("use_sliding_window")] public bool? UseSlidingWindow { get; init; }
    [JsonPropertyName("max_window_layers")] public int? MaxWindowLayers { get; init; }
    [JsonPropertyName("sliding_window_pattern")] public int? SlidingWindowPattern { get; init; }
    /// <summary>Per layer "sliding_attention" or "full_attention"; when present it decides over the family's rule.</summary>
    [JsonPropertyName("layer_types")] public string[]? LayerTypes { get; init; }
    /// <summary>Gemma 3: RoPE base of the sliding (local) layers.</summary>
    [JsonPropertyName("rope_local_base_freq")] public double? RopeLocalBaseFreq { get; init; }
    /// <summary>Gemma 2/3: attention scores scaled by query_pre_attn_scalar^-1/2 instead of head_dim^-1/2.</summary>
    [JsonPropertyName("query_pre_attn_scalar")] public double? QueryPreAttnScalar { get; init; }
    /// <summary>Gemma 2: scores become tanh(s / cap) · cap before the softmax.</summary>
    [JsonPropertyName("attn_logit_softcapping")] public double? AttnLogitSoftcapping { get; init; }
    /// <summary>Gemma 2/3: logits become tanh(z / cap) · cap.</summary>
    [JsonPropertyName("final_logit_softcapping")] public double? FinalLogitSoftcapping { get; init; }

    /// <summary>Classes of the sequence-classification head (<c>score.weight</c>, [num_labels, hidden]); null = no head. A reward
    /// model is num_labels 1. See <see cref="SequenceClassification"/>.</summary>
    [JsonPropertyName("num_labels")] public int? NumLabels { get; init; }
    /// <summary>The head's class names by index ("0" .. num_labels - 1), as Hugging Face writes them.</summary>
    [JsonPropertyName("id2label")] public Dictionary<string, string>? Id2Label { get; init; }
    [JsonPropertyName("label2id")] public Dictionary<string, int>? Label2Id { get; init; }

    /// <summary>The config.json this was read from, kept whole so a save writes back every key (only changed ones updated).</summary>
    [JsonIgnore] public JsonObject? Source { get; init; }

    [JsonIgnore] public int HeadDim => HeadDimOverride ?? HiddenSize / NumAttentionHeads;
    [JsonIgnore] public Family Family => Families.Get(ModelType);
    /// <summary>The MLP activation as the family's modeling code picks it: hidden_activation for Gemma 2/3, hidden_act otherwise.</summary>
    [JsonIgnore] public string Activation => Family.ActivationFromHiddenActivation ? HiddenActivation ?? HiddenAct : HiddenAct;
    /// <summary>Head dimensions RoPE rotates.</summary>
    [JsonIgnore] public int RotaryDim => (int)(HeadDim * (PartialRotaryFactor ?? 1.0));

    /// <summary>Whether layer <paramref name="layer"/> attends through the sliding window.</summary>
    public bool IsSlidingLayer(int layer) =>
        LayerTypes is { } types && SlidingWindow is > 0 ? types[layer] == "sliding_attention" : Family.IsSliding(this, layer);

    public static IReadOnlyList<string> Activations { get; } = ["silu", "gelu", "gelu_pytorch_tanh", "gelu_new", "gelu_fast", "relu"];

    /// <summary>Throws with the field's name when the shape cannot work.</summary>
    public ModelConfig Validate(string? source = null)
    {
        string Where(string field) => source is null ? field : $"{source}: {field}";
        var family = Families.Get(ModelType, source);
        if (!Activations.Contains(Activation))
            throw new InvalidDataException($"{Where(family.ActivationFromHiddenActivation && HiddenActivation is not null ? "hidden_activation" : "hidden_act")} is '{Activation}'; supported: {string.Join(", ", Activations)}");
        // Bounds far above any published model, so a typo or a corrupt file is caught here and not by the allocator.
        void InRange(string key, long value, long max)
        {
            if (value < 1 || value > max) throw new InvalidDataException($"{Where(key)} is {value}; it must be in [1, {max}]");
        }
        void Positive(string key, double value, double max)
        {
            if (!(value > 0 && value < max)) throw new InvalidDataException($"{Where(key)} is {value}; it must be a number in (0, {max})");
        }
        InRange("vocab_size", VocabSize, 1 << 24);
        InRange("hidden_size", HiddenSize, 1 << 17);
        InRange("intermediate_size", IntermediateSize, 1 << 20);
        InRange("num_hidden_layers", NumHiddenLayers, 1024);
        InRange("num_attention_heads", NumAttentionHeads, 1024);
        InRange("max_position_embeddings", MaxPositionEmbeddings, 1 << 24);
        if (HeadDimOverride is { } hd) InRange("head_dim", hd, 8192);
        Positive("rms_norm_eps", RmsNormEps, 1);
        Positive("rope_theta", RopeTheta, double.PositiveInfinity);
        if (!(InitializerRange >= 0 && double.IsFinite(InitializerRange)))
            throw new InvalidDataException($"{Where("initializer_range")} is {InitializerRange}; it must be a finite number >= 0");
        if (HeadDimOverride is null && HiddenSize % NumAttentionHeads != 0)
            throw new InvalidDataException($"{Where("hidden_size")} {HiddenSize} is not a multiple of num_attention_heads {NumAttentionHeads}");
        if (NumKeyValueHeads <= 0 || NumAttentionHeads % NumKeyValueHeads != 0)
            throw new InvalidDataException($"{Where("num_key_value_heads")} {NumKeyValueHeads} must divide num_attention_heads {NumAttentionHeads}");
        if (!family.LearnedPositions && (RotaryDim % 2 != 0 || RotaryDim <= 0 || RotaryDim > HeadDim))
            throw new InvalidDataException($"{Where("head_dim")} {HeadDim} (rotary part {RotaryDim}) must be even and positive for RoPE");
        if (LayerTypes is { } lt)
        {
            if (lt.Length != NumHiddenLayers)
                throw new InvalidDataException($"{Where("layer_types")} has {lt.Length} entries for {NumHiddenLayers} layers");
            var bad = lt.FirstOrDefault(t => t is not ("sliding_attention" or "full_attention"));
            if (bad is not null) throw new InvalidDataException($"{Where("layer_types")} entry '{bad}' is neither sliding_attention nor full_attention");
        }
        if (NumLabels is { } nl)
        {
            InRange("num_labels", nl, 1 << 16);
            if (Id2Label is { } names && (names.Count != nl || Enumerable.Range(0, nl).Any(i => !names.ContainsKey(i.ToString(System.Globalization.CultureInfo.InvariantCulture)))))
                throw new InvalidDataException($"{Where("id2label")} must name every class 0 .. {nl - 1} of num_labels {nl} (got keys {string.Join(", ", names.Keys)})");
        }
        RopeScaling?.Validate(Where("rope_scaling"));
        if (family.LearnedPositions && RopeScaling is not null)
            throw new InvalidDataException($"{Where("rope_scaling")}: {ModelType} has learned positions, not RoPE");
        return this;
    }

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>config.json's text: the loaded file with only the keys whose values changed rewritten, or, for a model
    /// built here, every field under the family's own key names.</summary>
    public string ToJson() => ToJsonObject().ToJsonString(Json);

    public JsonObject ToJsonObject()
    {
        var family = Family;
        var mine = Internal(this);
        if (Source is null) return Rename(mine, family);
        var result = (JsonObject)Source.DeepClone();
        var original = Internal(FromJson(Source, null));
        foreach (var (key, value) in mine)
        {
            original.TryGetPropertyValue(key, out var was);
            if (JsonNode.DeepEquals(was, value)) continue;
            var name = family.KeyAliases.FirstOrDefault(kv => kv.Value == key).Key ?? key;
            result[name] = value?.DeepClone();
        }
        return result;
    }

    static JsonObject Internal(ModelConfig c) => (JsonObject)JsonSerializer.SerializeToNode(c with { Source = null }, Json)!;

    static JsonObject Rename(JsonObject o, Family family)
    {
        var result = new JsonObject();
        foreach (var (key, value) in o)
        {
            var name = family.KeyAliases.FirstOrDefault(kv => kv.Value == key).Key ?? key;
            result[name] = value?.DeepClone();
        }
        return result;
    }

    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson());

    /// <summary>Reads a Hugging Face config.json of any supported family; keys this model does not use are kept (for the save)
    /// but ignored, bad values are named.</summary>
    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no config.json here; a checkpoint directory needs model.safetensors and config.json", path);
        JsonObject source;
        try
        {
            source = JsonNode.Parse(File.ReadAllText(path), documentOptions: Research.Data.JsonStrict.NoDuplicates) as JsonObject ?? throw new InvalidDataException($"{path}: config.json is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid config.json ({e.Message})", e);
        }
        return FromJson(source, path);
    }

    /// <summary>The record a config.json object describes: the family's HF defaults fill absent keys, its key names are
    /// mapped to Llama's, eos lists keep their first id, and token ids it lacks stay null (none is invented).</summary>
    public static ModelConfig FromJson(JsonObject source, string? path)
    {
        var where = path ?? "config.json";
        var modelType = source["model_type"] is JsonValue mt && mt.TryGetValue<string>(out var s) ? s
            : throw new InvalidDataException($"{where}: model_type is missing (supported: {string.Join(", ", Families.All.Select(f => f.ModelType))})");
        var family = Families.Get(modelType, where);
        var work = (JsonObject)source.DeepClone();
        foreach (var (key, value) in family.Defaults)
            if (!work.ContainsKey(key)) work[key] = value?.DeepClone();
        foreach (var (from, to) in family.KeyAliases)
            if (work.ContainsKey(from)) { var v = work[from]?.DeepClone(); work.Remove(from); work[to] = v; }
        // transformers 5 nests RoPE settings in rope_parameters (one dict, or one per layer kind for Gemma 3).
        if (work["rope_parameters"] is JsonObject rp)
        {
            var global = rp["full_attention"] as JsonObject ?? rp;
            if (global["rope_theta"] is { } theta) work["rope_theta"] = theta.DeepClone();
            var type = (global["rope_type"] ?? global["type"])?.GetValue<string>();
            if (type is not null and not "default") work["rope_scaling"] = global.DeepClone();
            if (rp["sliding_attention"] is JsonObject local && local["rope_theta"] is { } lt) work["rope_local_base_freq"] = lt.DeepClone();
        }
        if (work["num_key_value_heads"] is null) work["num_key_value_heads"] = work["num_attention_heads"]?.DeepClone();
        if (family.Mlp == MlpKind.Plain && work["intermediate_size"] is null && work["hidden_size"] is JsonValue h)
            work["intermediate_size"] = 4 * h.GetValue<int>();
        foreach (var key in new[] { "bos_token_id", "eos_token_id", "pad_token_id" })
        {
            if (!work.ContainsKey(key)) work[key] = null;
            else if (work[key] is JsonArray a) work[key] = a.Count > 0 ? a[0]?.DeepClone() : null;
        }
        foreach (var key in new[] { "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size" })
            if (work[key] is null) throw new InvalidDataException($"{where}: {key} is missing");
        if (work["torch_dtype"] is null) work["torch_dtype"] = work["dtype"]?.DeepClone() ?? "float32";
        if (work["architectures"] is null) work["architectures"] = new JsonArray(family.Architecture);
        // A Hugging Face *ForSequenceClassification checkpoint does not write num_labels: it is the size of id2label (2 by default).
        if (work["num_labels"] is null && work["architectures"] is JsonArray arch && arch.Count > 0 && arch[0] is JsonValue a0
            && a0.TryGetValue<string>(out var archName) && archName.EndsWith("ForSequenceClassification", StringComparison.Ordinal))
            work["num_labels"] = work["id2label"] is JsonObject labels ? labels.Count : 2;
        else if (work["num_labels"] is null) { work.Remove("id2label"); work.Remove("label2id"); }   // a causal LM's stray label names build no head

        ModelConfig? cfg;
        try { cfg = work.Deserialize<ModelConfig>(); }
        catch (JsonException e) { throw new InvalidDataException($"{where}: {e.Path}: {e.Message}", e); }
        return (cfg ?? throw new InvalidDataException($"{where}: empty config.json")).Validate(path) with { Source = (JsonObject)source.DeepClone() };
    }

    /// <summary>Named sizes are only numbers (torchtune style).</summary>
    public static ModelConfig Tiny(int vocabSize = 259) => new() { VocabSize = vocabSize };
}
