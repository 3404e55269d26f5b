using System.Text.Json;
using System.Text.Json.Nodes;

namespace Research.Data;

/// <summary>Finds a tokenizer by its short name or from the files <see cref="ITokenizer.Save"/> wrote.</summary>
public static class Tokenizers
{
    public const string ConfigFile = "tokenizer_config.json";
    public const string JsonFile = "tokenizer.json";
    public static IReadOnlyList<string> Names { get; } = ["byte", "gpt2"];

    internal static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    /// <summary>"byte" or "gpt2" (case-insensitive).</summary>
    public static ITokenizer ByName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return TryByName(name) ?? throw new TokenizerException(
            $"unknown tokenizer \"{name}\" (known: {string.Join(", ", Names)})");
    }

    /// <summary>Whether <paramref name="nameOrDirectory"/> is a built-in tokenizer's name rather than a directory.</summary>
    public static bool IsName(string nameOrDirectory) => TryByName(nameOrDirectory) is not null;

    /// <summary>A built-in tokenizer by name ("byte", "gpt2"), or the Hugging Face tokenizer in a directory (tokenizer.json).</summary>
    public static ITokenizer ByNameOrDirectory(string nameOrDirectory)
    {
        ArgumentNullException.ThrowIfNull(nameOrDirectory);
        if (TryByName(nameOrDirectory) is { } t) return t;
        if (Directory.Exists(nameOrDirectory)) return HfTokenizer.Load(nameOrDirectory);
        throw new TokenizerException(
            $"unknown tokenizer \"{nameOrDirectory}\": neither a built-in one ({string.Join(", ", Names)}) nor a directory holding {JsonFile} and {ConfigFile}");
    }

    static ITokenizer? TryByName(string name) => name.Trim().ToLowerInvariant() switch
    {
        "byte" => ByteTokenizer.Instance,
        "gpt2" or "gpt-2" => Gpt2Tokenizer.Instance,
        _ => null,
    };

    /// <summary>
    /// Reads <c>tokenizer_config.json</c> in <paramref name="directory"/>: its "research_tokenizer" field picks
    /// the tokenizer; without one, a directory that also holds <c>tokenizer.json</c> is a Hugging Face tokenizer
    /// (<see cref="HfTokenizer"/>), and otherwise a "tokenizer_class" of GPT2Tokenizer(Fast) means gpt2.
    /// </summary>
    public static ITokenizer Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path))
            throw new TokenizerException($"{path}: tokenizer config not found (a checkpoint directory should hold {ConfigFile}; save one with ITokenizer.Save)");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path), documentOptions: JsonStrict.NoDuplicates); }
        catch (JsonException e) { throw new TokenizerException($"{path}: malformed JSON ({e.Message})", e); }
        if (root is not JsonObject obj)
            throw new TokenizerException($"{path}: expected a JSON object");

        var name = StringField(obj, "research_tokenizer");
        if (name is null && File.Exists(Path.Combine(directory, JsonFile)))
            return HfTokenizer.Load(directory);
        if (name is null)
        {
            var cls = StringField(obj, "tokenizer_class");
            if (cls is "GPT2Tokenizer" or "GPT2TokenizerFast") name = "gpt2";
            else throw new TokenizerException(
                $"{path}: no \"research_tokenizer\" field and tokenizer_class \"{cls ?? "(none)"}\" is not one this framework knows (known: {string.Join(", ", Names)})");
        }
        return TryByName(name) ?? throw new TokenizerException(
            $"{path}: unknown research_tokenizer \"{name}\" (known: {string.Join(", ", Names)})");
    }

    /// <summary>
    /// Null when two tokenizers give every text the same ids, else why not: a different kind or size for the built-in ones;
    /// for Hugging Face ones, the first id below both vocabulary sizes that names different tokens (one may extend the other
    /// with added tokens, as Qwen3's adds &lt;think&gt; to Qwen2.5's). What merge and distill check before reading weights.
    /// </summary>
    public static string? Mismatch(ITokenizer a, ITokenizer b)
    {
        if (a is HfTokenizer ha && b is HfTokenizer hb)
        {
            for (var id = 0; id < Math.Min(ha.VocabSize, hb.VocabSize); id++)
                if (ha.IdToToken(id) is var ta && hb.IdToToken(id) is var tb && ta != tb)
                    return $"token id {id} is \"{ta}\" in {Path.Combine(ha.Directory, JsonFile)} but \"{tb}\" in {Path.Combine(hb.Directory, JsonFile)}";
            return null;
        }
        return a.Name == b.Name && a.VocabSize == b.VocabSize ? null
            : $"one uses the {a.Name} tokenizer ({a.VocabSize} tokens), the other the {b.Name} tokenizer ({b.VocabSize} tokens)";
    }

    /// <summary>True when the directory holds tokenizer files (<see cref="ConfigFile"/>).</summary>
    public static bool Exists(string directory) => File.Exists(Path.Combine(directory, ConfigFile));

    static string? StringField(JsonObject obj, string field) =>
        obj[field] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    internal static JsonObject Config(string cls, string name, string bos, string eos, string pad, int vocab) => new()
    {
        ["tokenizer_class"] = cls,
        ["research_tokenizer"] = name,
        ["bos_token"] = bos,
        ["eos_token"] = eos,
        ["pad_token"] = pad,
        ["vocab_size"] = vocab,
    };
}
