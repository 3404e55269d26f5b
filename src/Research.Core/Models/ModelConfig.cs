using System.Text.Json;
using System.Text.Json.Serialization;
using Research.Runs;

namespace Research.Models;

/// <summary>
/// A Llama-style decoder's shape, with Hugging Face <c>ModelConfig</c> field names in config.json.
/// Defaults describe the tiny byte-level model the quick start trains in minutes on two cores.
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
    [JsonPropertyName("rms_norm_eps")] public double RmsNormEps { get; init; } = 1e-5;
    [JsonPropertyName("rope_theta")] public double RopeTheta { get; init; } = 10000.0;
    /// <summary>Tied: lm_head reuses embed_tokens (saves vocab x hidden parameters; HF omits lm_head.weight).</summary>
    [JsonPropertyName("tie_word_embeddings")] public bool TieWordEmbeddings { get; init; } = true;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; init; } = "silu";
    [JsonPropertyName("initializer_range")] public double InitializerRange { get; init; } = 0.02;
    [JsonPropertyName("attention_bias")] public bool AttentionBias { get; init; }
    [JsonPropertyName("mlp_bias")] public bool MlpBias { get; init; }
    /// <summary>Null: hidden_size / num_attention_heads.</summary>
    [JsonPropertyName("head_dim")] public int? HeadDimOverride { get; init; }
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get; init; } = 256;
    [JsonPropertyName("eos_token_id")] public int? EosTokenId { get; init; } = 257;
    [JsonPropertyName("pad_token_id")] public int? PadTokenId { get; init; } = 258;
    [JsonPropertyName("torch_dtype")] public string TorchDtype { get; init; } = "float32";

    [JsonIgnore] public int HeadDim => HeadDimOverride ?? HiddenSize / NumAttentionHeads;

    /// <summary>Throws with the field's name when the shape cannot work.</summary>
    public ModelConfig Validate(string? source = null)
    {
        string Where(string field) => source is null ? field : $"{source}: {field}";
        if (ModelType != "llama") throw new InvalidDataException($"{Where("model_type")} is '{ModelType}'; only 'llama' is supported");
        if (HiddenAct != "silu") throw new InvalidDataException($"{Where("hidden_act")} is '{HiddenAct}'; only 'silu' (SwiGLU) is supported");
        if (VocabSize <= 0 || HiddenSize <= 0 || IntermediateSize <= 0 || NumHiddenLayers <= 0 || NumAttentionHeads <= 0)
            throw new InvalidDataException($"{Where("config")}: sizes must be positive");
        if (HeadDimOverride is null && HiddenSize % NumAttentionHeads != 0)
            throw new InvalidDataException($"{Where("hidden_size")} {HiddenSize} is not a multiple of num_attention_heads {NumAttentionHeads}");
        if (NumKeyValueHeads <= 0 || NumAttentionHeads % NumKeyValueHeads != 0)
            throw new InvalidDataException($"{Where("num_key_value_heads")} {NumKeyValueHeads} must divide num_attention_heads {NumAttentionHeads}");
        if (HeadDim % 2 != 0) throw new InvalidDataException($"{Where("head_dim")} {HeadDim} must be even for RoPE");
        return this;
    }

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson());

    /// <summary>Reads a Hugging Face config.json; keys this model does not use are ignored, bad values are named.</summary>
    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no config.json here; a checkpoint directory needs model.safetensors and config.json", path);
        ModelConfig? cfg;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind != JsonValueKind.Null)
                throw new InvalidDataException($"{path}: rope_scaling is set; scaled RoPE is not supported yet");
            // HF writes eos_token_id as a list for some models: keep the first.
            var text = File.ReadAllText(path);
            if (doc.RootElement.TryGetProperty("eos_token_id", out var eos) && eos.ValueKind == JsonValueKind.Array)
            {
                var node = System.Text.Json.Nodes.JsonNode.Parse(text)!.AsObject();
                node["eos_token_id"] = eos.GetArrayLength() > 0 ? eos[0].GetInt32() : null;
                text = node.ToJsonString();
            }
            cfg = JsonSerializer.Deserialize<ModelConfig>(text);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid config.json ({e.Message})", e);
        }
        return (cfg ?? throw new InvalidDataException($"{path}: empty config.json")).Validate(path);
    }

    /// <summary>Named sizes are only numbers (torchtune style).</summary>
    public static ModelConfig Tiny(int vocabSize = 259) => new() { VocabSize = vocabSize };
}
