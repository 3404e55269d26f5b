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
        if (kind == JsonValueKind.Object) return doc;
        doc.Dispose();
        throw new CorpusException($"{at}: expected a JSON object with {expected}, got {kind.ToString().ToLowerInvariant()}");
    }
}
