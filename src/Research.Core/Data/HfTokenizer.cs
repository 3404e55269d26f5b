extern alias HfNative;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Research.Runs;
using Native = HfNative::Tokenizers.DotNet;

namespace Research.Data;

/// <summary>
/// A real Hugging Face tokenizer (tokenizer.json + tokenizer_config.json [+ special_tokens_map.json, generation_config.json])
/// run by the Rust <c>tokenizers</c> library through Tokenizers.DotNet; what that thin binding lacks (added tokens,
/// vocabulary, special-token conventions, encoding without specials) is read from the JSON files here.
/// <list type="bullet">
/// <item><see cref="Encode"/> gives the ids without what the post-processor adds (HF <c>add_special_tokens=False</c>);
/// <see cref="EncodeWithSpecial"/> gives HF's <c>tokenizer(text)</c>. Added tokens written literally in the text
/// ("&lt;|im_start|&gt;") become their single ids in both, as in HF.</item>
/// <item><see cref="Decode"/> drops special added tokens (HF <c>skip_special_tokens=True</c>, like the byte and gpt2
/// tokenizers drop theirs); non-special added tokens (Qwen's &lt;think&gt;) stay. <see cref="DecodeWithSpecial"/> keeps them.</item>
/// <item><see cref="BosId"/> is the bos token; a model without one (Qwen) gets its pad token, else its eos, so that code
/// which prepends BosId still writes a known separator; <see cref="AddsBos"/> says whether HF itself prepends it.
/// <see cref="PadId"/> falls back to <see cref="EosId"/>. <see cref="EosIds"/> is generation_config.json's eos_token_id
/// (what HF generate stops on) when present, else [<see cref="EosId"/>].</item>
/// <item><see cref="Save"/> writes the original files byte-identical.</item>
/// </list>
/// </summary>
public sealed class HfTokenizer : ITokenizer
{
    /// <summary>The files <see cref="Save"/> copies when the source directory has them (tokenizer.json always).</summary>
    public static IReadOnlyList<string> Files { get; } =
        [Tokenizers.JsonFile, Tokenizers.ConfigFile, HfTokenizerConfig.SpecialTokensMapFile, HfTokenizerConfig.GenerationConfigFile, HfTokenizerConfig.ChatTemplateFile];

    readonly Native.Tokenizer _native;
    readonly IReadOnlyDictionary<string, int> _vocab;
    readonly HashSet<int> _special;
    readonly Dictionary<int, string> _content;
    readonly int[] _prefix, _suffix;
    readonly Dictionary<string, byte[]> _files;

    HfTokenizer(string directory, Native.Tokenizer native, HfTokenizerFile file, HfTokenizerConfig config, Dictionary<string, byte[]> files)
    {
        Directory = directory;
        _native = native;
        _vocab = file.Vocab;
        _prefix = file.PrefixIds;
        _suffix = file.SuffixIds;
        _files = files;
        Config = config;
        AddedTokenList = file.AddedTokens;
        AddedTokens = file.AddedTokens.GroupBy(t => t.Content).ToDictionary(g => g.Key, g => g.First().Id);
        _special = file.AddedTokens.Where(t => t.Special).Select(t => t.Id).ToHashSet();
        _content = file.AddedTokens.GroupBy(t => t.Id).ToDictionary(g => g.Key, g => g.First().Content);
        VocabSize = Math.Max(_vocab.Count == 0 ? -1 : _vocab.Values.Max(), file.AddedTokens.Count == 0 ? -1 : file.AddedTokens.Max(t => t.Id)) + 1;

        var configPath = Path.Combine(directory, Tokenizers.ConfigFile);
        int? Id(string? token, string field) => token is null ? null
            : TokenToId(token) ?? throw new TokenizerException($"{configPath}: {field} \"{token}\" is not in {Tokenizers.JsonFile}");
        var bos = Id(config.BosToken, "bos_token");
        var pad = Id(config.PadToken, "pad_token");
        UnkId = Id(config.UnkToken, "unk_token");
        EosId = Id(config.EosToken, "eos_token")
            ?? (config.GenerationEosIds.Count > 0 ? config.GenerationEosIds[0]
            : throw new TokenizerException($"{configPath}: no eos_token (and no {HfTokenizerConfig.GenerationConfigFile} eos_token_id)"));
        PadId = pad ?? EosId;
        BosId = bos ?? pad ?? EosId;
        AddsBos = bos is { } b && _prefix.Contains(b);
        EosIds = config.GenerationEosIds.Count > 0 ? config.GenerationEosIds : [EosId];
    }

    /// <summary>Loads the tokenizer in <paramref name="directory"/>; a missing or unreadable file is a <see cref="TokenizerException"/> naming it.</summary>
    public static HfTokenizer Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var jsonPath = Path.Combine(directory, Tokenizers.JsonFile);
        if (!File.Exists(jsonPath))
            throw new TokenizerException($"{jsonPath}: not found (a Hugging Face tokenizer directory holds {Tokenizers.JsonFile} and {Tokenizers.ConfigFile})");
        var config = HfTokenizerConfig.Read(directory);
        var files = Files.Where(f => File.Exists(Path.Combine(directory, f)))
            .ToDictionary(f => f, f => File.ReadAllBytes(Path.Combine(directory, f)));
        var file = HfTokenizerFile.Parse(jsonPath, files[Tokenizers.JsonFile]);
        var native = Open(jsonPath, file.HasTruncationOrPadding ? WithoutTruncationOrPadding(jsonPath, files[Tokenizers.JsonFile]) : jsonPath);
        var tokenizer = new HfTokenizer(directory, native, file, config, files);
        tokenizer.CheckPostProcessor(jsonPath);
        tokenizer.CheckAddedTokens(jsonPath);
        return tokenizer;
    }

    static Native.Tokenizer Open(string path, string loadFrom)
    {
        try { return new Native.Tokenizer(loadFrom); }
        catch (Native.TokenizerException e) { throw new TokenizerException($"{path}: the tokenizers library cannot load it ({e.Message})", e); }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or EntryPointNotFoundException)
        {
            throw new TokenizerException($"{path}: the tokenizers native library (Tokenizers.DotNet.runtime) could not be loaded ({e.Message})", e);
        }
    }

    /// <summary>
    /// The library applies tokenizer.json's truncation and padding on every encode (transformers applies them only when
    /// asked), so it gets a copy without them, kept in the temp folder under the file's hash.
    /// </summary>
    static string WithoutTruncationOrPadding(string path, byte[] bytes)
    {
        var copy = Path.Combine(Path.GetTempPath(), "research-tokenizers", Convert.ToHexString(SHA256.HashData(bytes))[..16] + ".json");
        if (File.Exists(copy)) return copy;
        var root = JsonNode.Parse(bytes) as JsonObject ?? throw new TokenizerException($"{path}: expected a JSON object");
        root["truncation"] = null;
        root["padding"] = null;
        System.IO.Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
        AtomicFile.WriteAllText(copy, root.ToJsonString());
        return copy;
    }

    /// <summary>Encoding "" must give exactly what the post-processor adds (what <see cref="Encode"/> strips).</summary>
    void CheckPostProcessor(string path)
    {
        var empty = NativeEncode("");
        if (!empty.SequenceEqual(_prefix.Concat(_suffix)))
            throw new TokenizerException(
                $"{path}: the post-processor adds [{string.Join(", ", empty)}] to an empty text, not the [{string.Join(", ", _prefix.Concat(_suffix))}] read from its post_processor section");
    }

    /// <summary>
    /// Each added token must encode to the id its entry gives: the library numbers added tokens itself, and a tokenizer.json
    /// whose ids disagree with it (a vocabulary id given twice, a gap before the added ids) would map text and ids differently
    /// here and there.
    /// </summary>
    void CheckAddedTokens(string path)
    {
        foreach (var t in AddedTokenList)
        {
            var ids = _native.Encode(t.Content);                  // unchecked: the id the library gives is what this reports
            if (!ids.Select(i => (long)i).SequenceEqual(_prefix.Append(t.Id).Concat(_suffix).Select(i => (long)i)))
                throw new TokenizerException(
                    $"{path}: added token \"{t.Content}\" has id {t.Id} in added_tokens, but the tokenizers library encodes it as [{string.Join(", ", ids)}] (ids given twice in model.vocab or added_tokens?)");
        }
    }

    public string Name => "hf";
    /// <summary>The directory it was loaded from.</summary>
    public string Directory { get; }
    public HfTokenizerConfig Config { get; }
    /// <summary>Model vocabulary including added tokens: the largest id + 1 (the model's embedding may be padded beyond it).</summary>
    public int VocabSize { get; }
    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }
    public int? UnkId { get; }
    /// <summary>Whether HF prepends <see cref="BosId"/> (<see cref="EncodeWithSpecial"/> starts with it): Llama yes, Qwen no.</summary>
    public bool AddsBos { get; }
    /// <summary>The ids generation stops on (generation_config.json's eos_token_id, else [<see cref="EosId"/>]).</summary>
    public IReadOnlyList<int> EosIds { get; }
    public string? ChatTemplate => Config.ChatTemplate;
    public int? ModelMaxLength => Config.ModelMaxLength;
    /// <summary>tokenizer.json's added tokens, content to id.</summary>
    public IReadOnlyDictionary<string, int> AddedTokens { get; }
    public IReadOnlyList<HfAddedToken> AddedTokenList { get; }
    /// <summary>Ids the post-processor puts before / after a single text in <see cref="EncodeWithSpecial"/>.</summary>
    public IReadOnlyList<int> PrefixIds => _prefix;
    public IReadOnlyList<int> SuffixIds => _suffix;

    public bool IsSpecial(int id) => _special.Contains(id);

    /// <summary>The id of an added token or of a vocabulary entry (as written in the vocabulary, e.g. "▁Hello", "Ġworld").</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return AddedTokens.TryGetValue(token, out var a) ? a : _vocab.TryGetValue(token, out var v) ? v : null;
    }

    /// <summary>The token string of an id (an added token's content, else the vocabulary entry); null for an id with none.</summary>
    public string? IdToToken(int id) => id >= 0 && id < VocabSize ? _byId.Value[id] : null;

    Lazy<string?[]> _byId => _byIdCache ??= new Lazy<string?[]>(() =>
    {
        var a = new string?[VocabSize];
        foreach (var (token, i) in _vocab) a[i] = token;
        foreach (var (i, token) in _content) a[i] = token;
        return a;
    });
    Lazy<string?[]>? _byIdCache;

    /// <summary>HF <c>tokenizer(text)["input_ids"]</c>: with the post-processor's specials (Llama's &lt;s&gt;; none for Qwen).</summary>
    public int[] EncodeWithSpecial(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return NativeEncode(text);
    }

    /// <summary>HF <c>tokenizer(text, add_special_tokens=False)</c>: the post-processor's prefix and suffix removed.</summary>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = NativeEncode(text);
        if (_prefix.Length + _suffix.Length == 0) return ids;
        if (ids.Length < _prefix.Length + _suffix.Length || !ids.AsSpan(0, _prefix.Length).SequenceEqual(_prefix)
            || !ids.AsSpan(ids.Length - _suffix.Length).SequenceEqual(_suffix))
            throw new TokenizerException($"{Path.Combine(Directory, Tokenizers.JsonFile)}: the encoding of a text does not start with [{string.Join(", ", _prefix)}] and end with [{string.Join(", ", _suffix)}] as its post_processor says");
        return ids[_prefix.Length..^_suffix.Length];
    }

    /// <summary>
    /// The ids of the concatenated pieces and, per id, its piece's Trained flag (a loss mask), without post-processor
    /// specials; see <see cref="HfPieces"/> for how tokens are assigned and when it throws.
    /// </summary>
    public SftTokens EncodePieces(IReadOnlyList<(string Text, bool Trained)> pieces) => HfPieces.Encode(this, pieces);

    /// <summary>Text of the ids with special added tokens dropped (HF <c>skip_special_tokens=True</c>).</summary>
    public string Decode(IEnumerable<int> ids) => _native.Decode(Checked(ids).ToArray());

    /// <summary>
    /// Text of the ids with special tokens written out: the runs between specials are decoded on their own and joined with
    /// the specials' content. For byte-level BPE (Qwen, Llama 3) that is HF's <c>skip_special_tokens=False</c>; a decoder
    /// that strips a leading space (SentencePiece: Llama 2, Mistral) strips it after each special too.
    /// </summary>
    public string DecodeWithSpecial(IEnumerable<int> ids)
    {
        var all = Checked(ids).ToArray();
        var text = new System.Text.StringBuilder();
        var run = new List<uint>();
        foreach (var id in all)
        {
            if (!_special.Contains((int)id)) { run.Add(id); continue; }
            if (run.Count > 0) { text.Append(_native.Decode(run.ToArray())); run.Clear(); }
            text.Append(_content[(int)id]);
        }
        if (run.Count > 0) text.Append(_native.Decode(run.ToArray()));
        return text.ToString();
    }

    IEnumerable<uint> Checked(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        foreach (var id in ids)
        {
            if (id < 0 || id >= VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"hf token ids are in [0, {VocabSize})");
            yield return (uint)id;
        }
    }

    int[] NativeEncode(string text)
    {
        var raw = _native.Encode(text);
        var ids = new int[raw.Length];
        for (var i = 0; i < raw.Length; i++)
            ids[i] = raw[i] < (uint)VocabSize ? (int)raw[i]
                : throw new TokenizerException($"{Path.Combine(Directory, Tokenizers.JsonFile)}: the tokenizers library gave id {raw[i]}, outside the {VocabSize} ids of its vocabulary and added tokens");
        return ids;
    }

    /// <summary>Copies the original files (tokenizer.json, tokenizer_config.json and those of <see cref="Files"/> it had) byte-identical.</summary>
    public void Save(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        System.IO.Directory.CreateDirectory(directory);
        foreach (var (name, bytes) in _files) AtomicFile.WriteAllBytes(Path.Combine(directory, name), bytes);
    }
}
