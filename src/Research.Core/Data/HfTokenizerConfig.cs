using System.Text.Json;
using System.Text.Json.Nodes;

namespace Research.Data;

/// <summary>
/// What a Hugging Face tokenizer directory says besides the vocabulary: the special tokens (tokenizer_config.json, then
/// special_tokens_map.json for fields the first lacks; each a string or a <c>{"content": ...}</c> object), add_bos_token /
/// add_eos_token, the chat template (a string, or a list of <c>{name, template}</c> of which "default" is taken; else
/// chat_template.jinja), model_max_length (null when absent or the "unset" sentinel 1e30), and generation_config.json's
/// eos_token_id (an int or a list).
/// </summary>
public sealed record HfTokenizerConfig(
    string? BosToken,
    string? EosToken,
    string? PadToken,
    string? UnkToken,
    bool? AddBosToken,
    bool? AddEosToken,
    string? ChatTemplate,
    int? ModelMaxLength,
    IReadOnlyList<int> GenerationEosIds)
{
    /// <summary>The special tokens a chat template sees (bos_token, eos_token, ...), as tokenizer_config.json gives them.</summary>
    public IReadOnlyDictionary<string, string> TemplateTokens { get; init; } = new Dictionary<string, string>();

    static readonly string[] TemplateTokenKeys = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    public const string SpecialTokensMapFile = "special_tokens_map.json";
    public const string GenerationConfigFile = "generation_config.json";
    public const string ChatTemplateFile = "chat_template.jinja";

    /// <summary>Reads the files of <paramref name="directory"/>; tokenizer_config.json is required, the others optional.</summary>
    public static HfTokenizerConfig Read(string directory)
    {
        var configPath = Path.Combine(directory, Tokenizers.ConfigFile);
        var config = ReadObject(configPath) ?? throw new TokenizerException(
            $"{configPath}: tokenizer config not found (a Hugging Face tokenizer directory holds {Tokenizers.JsonFile} and {Tokenizers.ConfigFile})");
        var map = ReadObject(Path.Combine(directory, SpecialTokensMapFile)) ?? [];
        var generation = ReadObject(Path.Combine(directory, GenerationConfigFile));

        string? Special(string field) => SpecialToken(config[field], configPath, field)
            ?? SpecialToken(map[field], Path.Combine(directory, SpecialTokensMapFile), field);

        var template = Template(config["chat_template"], configPath);
        var templateFile = Path.Combine(directory, ChatTemplateFile);
        if (template is null && File.Exists(templateFile)) template = File.ReadAllText(templateFile);

        return new HfTokenizerConfig(
            Special("bos_token"), Special("eos_token"), Special("pad_token"), Special("unk_token"),
            Bool(config["add_bos_token"]), Bool(config["add_eos_token"]), template,
            MaxLength(config["model_max_length"]),
            generation is null ? [] : Ids(generation["eos_token_id"], Path.Combine(directory, GenerationConfigFile), "eos_token_id"))
        {
            TemplateTokens = TemplateTokenKeys.Select(k => (k, v: SpecialToken(config[k], configPath, k))).Where(t => t.v is not null).ToDictionary(t => t.k, t => t.v!),
        };
    }

    /// <summary>The JSON object in <paramref name="path"/>, or null when the file does not exist.</summary>
    internal static JsonObject? ReadObject(string path)
    {
        if (!File.Exists(path)) return null;
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path), documentOptions: JsonStrict.NoDuplicates); }
        catch (JsonException e) { throw new TokenizerException($"{path}: malformed JSON ({e.Message})", e); }
        return root as JsonObject ?? throw new TokenizerException($"{path}: expected a JSON object");
    }

    /// <summary>A special token written as "&lt;s&gt;" or as {"content": "&lt;s&gt;", ...}; null for null or absent.</summary>
    internal static string? SpecialToken(JsonNode? node, string path, string field) => node switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonObject o when o["content"] is JsonValue c && c.TryGetValue<string>(out var s) => s,
        _ => throw new TokenizerException($"{path}: \"{field}\" should be a string or an object with a \"content\" string, not {node.ToJsonString()}"),
    };

    static string? Template(JsonNode? node, string path)
    {
        switch (node)
        {
            case null: return null;
            case JsonValue v when v.TryGetValue<string>(out var s): return s;
            case JsonArray list:
                foreach (var item in list)
                {
                    if (item is not JsonObject o || !IsString(o["name"]) || !IsString(o["template"]))
                        throw new TokenizerException($"{path}: each entry of \"chat_template\" should be an object with a \"name\" and a \"template\" string, not {item?.ToJsonString() ?? "null"}");
                    if (o["name"]!.GetValue<string>() == "default") return o["template"]!.GetValue<string>();
                }
                return null;
            default: throw new TokenizerException($"{path}: \"chat_template\" should be a string or a list of {{name, template}} objects");
        }
    }

    static bool IsString(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out _);

    static bool? Bool(JsonNode? node) => node is JsonValue v && v.TryGetValue<bool>(out var b) ? b : null;

    static int? MaxLength(JsonNode? node)
    {
        if (node is not JsonValue v) return null;
        double d;
        if (v.TryGetValue<long>(out var l)) d = l;
        else if (!v.TryGetValue(out d)) return null;
        // transformers writes int(1e30) when the length is unset.
        return d is >= 1 and <= int.MaxValue ? (int)d : null;
    }

    static IReadOnlyList<int> Ids(JsonNode? node, string path, string field) => node switch
    {
        null => [],
        JsonValue v when v.TryGetValue<int>(out var id) => [id],
        JsonArray a => a.Select(n => n is JsonValue e && e.TryGetValue<int>(out var id) ? id
            : throw new TokenizerException($"{path}: \"{field}\" should be an int or a list of ints")).ToArray(),
        _ => throw new TokenizerException($"{path}: \"{field}\" should be an int or a list of ints"),
    };
}
