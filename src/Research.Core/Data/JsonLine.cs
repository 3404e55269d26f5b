using System.Text.Json;

namespace Research.Data;

/// <summary>One line of a JSONL file, which must hold a JSON object: the check every reader shares.</summary>
public static class JsonLine
{
    /// <summary>Parses <paramref name="text"/>; a malformed line or one that is not an object is a
    /// <see cref="CorpusException"/> naming <paramref name="at"/> (file:line) and what was <paramref name="expected"/>.</summary>
    public static JsonDocument ParseObject(string text, string at, string expected)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(text); }
        catch (JsonException e) { throw new CorpusException($"{at}: malformed JSON ({e.Message})", e); }
        var kind = doc.RootElement.ValueKind;
        if (kind == JsonValueKind.Object)
        {
            if (text.Contains("\\u", StringComparison.Ordinal)) CheckKeys(doc, doc.RootElement, at);   // only escapes can hide a lone surrogate
            return doc;
        }
        doc.Dispose();
        throw new CorpusException($"{at}: expected a JSON object with {expected}, got {kind.ToString().ToLowerInvariant()}");
    }

    /// <summary>
    /// Every key must be valid text: System.Text.Json compares an escaped key by unescaping it, and a lone surrogate escape
    /// in one makes any later lookup (TryGetProperty) throw an InvalidOperationException. Found by ReliabilityFuzz.
    /// </summary>
    static void CheckKeys(JsonDocument doc, JsonElement e, string at)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    try { _ = p.Name; }
                    catch (InvalidOperationException ex)
                    {
                        doc.Dispose();
                        throw new CorpusException($"{at}: a key is not valid text ({ex.Message}); a lone surrogate escape such as \\ud800 has no character", ex);
                    }
                    CheckKeys(doc, p.Value, at);
                }
                break;
            case JsonValueKind.Array:
                foreach (var item in e.EnumerateArray()) CheckKeys(doc, item, at);
                break;
        }
    }

    /// <summary>
    /// A JSON string's text; a string that is not valid UTF-16 (a lone surrogate escape such as <c>"\ud800"</c>, which the
    /// parser accepts but cannot decode) is a <see cref="CorpusException"/> naming <paramref name="at"/> (file:line).
    /// </summary>
    public static string Text(JsonElement value, string at)
    {
        try { return value.GetString()!; }
        catch (InvalidOperationException e) when (value.ValueKind == JsonValueKind.String)
        {
            throw new CorpusException($"{at}: a string is not valid text ({e.Message}); a lone surrogate escape such as \\ud800 has no character", e);
        }
    }

    /// <summary>
    /// Every non-blank line of a JSONL file (strict UTF-8, <see cref="Utf8Text"/>) through <paramref name="parse"/> (text, file, 1-based line number).
    /// A missing file or one with no object is a <see cref="CorpusException"/> with the given messages (the path is prepended).
    /// </summary>
    public static IReadOnlyList<T> ReadFile<T>(string path, Func<string, string, int, T> parse, string whenMissing, string whenEmpty)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new CorpusException($"{path}: {whenMissing}");
        var items = new List<T>();
        foreach (var (line, lineNo) in Utf8Text.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            items.Add(parse(line, path, lineNo));
        }
        if (items.Count == 0) throw new CorpusException($"{path}: {whenEmpty}");
        return items;
    }
}
