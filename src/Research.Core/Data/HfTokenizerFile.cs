using System.Text.Json;

namespace Research.Data;

/// <summary>
/// What HfTokenizer reads from tokenizer.json itself (the Rust library does not expose it): the added tokens, the model
/// vocabulary (token to id), and the special ids the post-processor puts before and after a single sequence.
/// </summary>
sealed record HfTokenizerFile(
    IReadOnlyList<HfAddedToken> AddedTokens,
    IReadOnlyDictionary<string, int> Vocab,
    int[] PrefixIds,
    int[] SuffixIds,
    bool HasTruncationOrPadding)
{
    /// <summary>Ids at or above this are refused (published vocabularies stay far below: Gemma 3's is 262,144).</summary>
    public const int MaxId = 1 << 24;

    public static HfTokenizerFile Parse(string path, byte[] bytes)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 });
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new TokenizerException($"{path}: expected a JSON object");
            var added = new List<HfAddedToken>();
            if (root.TryGetProperty("added_tokens", out var list) && list.ValueKind == JsonValueKind.Array)
                foreach (var t in list.EnumerateArray())
                {
                    var content = Text(t.GetProperty("content"), path, "added_tokens content");
                    added.Add(new HfAddedToken(Id(t.GetProperty("id"), path, content), content,
                        t.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True));
                }
            var vocab = root.TryGetProperty("model", out var model) ? Vocabulary(model, path) : new Dictionary<string, int>();
            var (prefix, suffix) = root.TryGetProperty("post_processor", out var post) ? Specials(post, path) : ([], []);
            var extra = IsSet(root, "truncation") || IsSet(root, "padding");
            return new HfTokenizerFile(added, vocab, prefix, suffix, extra);
        }
        catch (JsonException e) { throw new TokenizerException($"{path}: malformed JSON ({e.Message})", e); }
        // What JsonElement throws for a value of the wrong kind, a missing property or index, a null name: the file's shape is wrong.
        catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or FormatException or IndexOutOfRangeException or ArgumentNullException)
        {
            throw new TokenizerException($"{path}: cannot read the tokenizer ({e.Message})", e);
        }
    }

    static bool IsSet(JsonElement root, string field) =>
        root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null;

    /// <summary>BPE, WordPiece and WordLevel keep {token: id}; Unigram keeps [[piece, score], ...] where the index is the id.</summary>
    static Dictionary<string, int> Vocabulary(JsonElement model, string path)
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        if (!model.TryGetProperty("vocab", out var v)) return vocab;
        if (v.ValueKind == JsonValueKind.Object)
            foreach (var p in v.EnumerateObject()) vocab[p.Name] = Id(p.Value, path, p.Name);
        else if (v.ValueKind == JsonValueKind.Array)
        {
            var i = 0;
            foreach (var piece in v.EnumerateArray())
            {
                if (piece.ValueKind != JsonValueKind.Array || piece.GetArrayLength() == 0)
                    throw new TokenizerException($"{path}: model.vocab entry {i} should be [piece, score], not {piece.GetRawText()}");
                if (i == MaxId) throw new TokenizerException($"{path}: model.vocab has more than {MaxId} pieces");
                vocab.TryAdd(Text(piece[0], path, $"model.vocab entry {i}"), i++);
            }
        }
        return vocab;
    }

    /// <summary>A token id: an integer in [0, <see cref="MaxId"/>).</summary>
    static int Id(JsonElement e, string path, string token) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var id) && id is >= 0 and < MaxId ? id
            : throw new TokenizerException($"{path}: the id of \"{token}\" should be an integer in [0, {MaxId}), not {e.GetRawText()}");

    static string Text(JsonElement e, string path, string what) =>
        e.ValueKind == JsonValueKind.String ? e.GetString()! : throw new TokenizerException($"{path}: {what} should be a string, not {e.GetRawText()}");

    /// <summary>
    /// The ids the post-processor adds around a single sequence: TemplateProcessing's "single" (special tokens before
    /// and after $A), Bert/Roberta's cls ... sep, and Sequence of those (at most one that adds). ByteLevel adds none.
    /// </summary>
    static (int[] Prefix, int[] Suffix) Specials(JsonElement post, string path)
    {
        if (post.ValueKind == JsonValueKind.Null) return ([], []);
        var type = post.GetProperty("type").GetString();
        switch (type)
        {
            case "ByteLevel": return ([], []);
            case "BertProcessing" or "RobertaProcessing":
                return ([post.GetProperty("cls")[1].GetInt32()], [post.GetProperty("sep")[1].GetInt32()]);
            case "TemplateProcessing":
            {
                var specials = post.GetProperty("special_tokens");
                List<int> prefix = [], suffix = [];
                var seenSequence = false;
                foreach (var item in post.GetProperty("single").EnumerateArray())
                {
                    if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
                    var id = item.GetProperty("SpecialToken").GetProperty("id").GetString()!;
                    var ids = specials.GetProperty(id).GetProperty("ids").EnumerateArray().Select(e => e.GetInt32());
                    (seenSequence ? suffix : prefix).AddRange(ids);
                }
                return (prefix.ToArray(), suffix.ToArray());
            }
            case "Sequence":
            {
                (int[], int[]) result = ([], []);
                foreach (var p in post.GetProperty("processors").EnumerateArray())
                {
                    var r = Specials(p, path);
                    if (r.Prefix.Length + r.Suffix.Length == 0) continue;
                    if (result.Item1.Length + result.Item2.Length > 0)
                        throw new TokenizerException($"{path}: post_processor Sequence with more than one processor that adds special tokens is not supported");
                    result = r;
                }
                return result;
            }
            default:
                throw new TokenizerException($"{path}: post_processor type \"{type}\" is not supported (known: ByteLevel, TemplateProcessing, BertProcessing, RobertaProcessing, Sequence)");
        }
    }
}
