using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Research.Data;

/// <summary>
/// Reads multiple-choice questions from JSONL, one object per line:
/// <c>{"question": "...", "choices": ["...", "..."], "answer": 1}</c>, where <c>answer</c> is the 0-based index
/// of the gold choice or a string equal to one of the choices. Blank lines are skipped; other fields are
/// ignored. Every error names the file and line.
/// </summary>
public static class McData
{
    public static IReadOnlyList<McItem> Read(string path) =>
        JsonLine.ReadFile(path, (text, file, line) => Parse(text, file, line),
            "multiple-choice data not found (expected a .jsonl file of question/choices/answer objects)",
            "no questions (the file is empty); write one JSON object per line with \"question\", \"choices\" and \"answer\"");

    /// <summary>One JSONL line; <paramref name="source"/> and <paramref name="line"/> only name it in errors.</summary>
    public static McItem Parse(string json, string source, int line)
    {
        var at = $"{source}:{line}";
        using (var doc = JsonLine.ParseObject(json, at, "\"question\", \"choices\" and \"answer\""))
        {
            var root = doc.RootElement;
            if (!root.TryGetProperty("question", out var q)) throw new CorpusException($"{at}: missing field \"question\"");
            if (q.ValueKind != JsonValueKind.String) throw new CorpusException($"{at}: \"question\" must be a string");
            if (!root.TryGetProperty("choices", out var cs)) throw new CorpusException($"{at}: missing field \"choices\"");
            if (cs.ValueKind != JsonValueKind.Array) throw new CorpusException($"{at}: \"choices\" must be an array of strings");
            var choices = new List<string>();
            foreach (var c in cs.EnumerateArray())
            {
                if (c.ValueKind != JsonValueKind.String)
                    throw new CorpusException($"{at}: choice {choices.Count} is not a string (\"choices\" must be an array of strings)");
                choices.Add(JsonLine.Text(c, at));
            }
            if (choices.Count < 2) throw new CorpusException($"{at}: fewer than 2 choices ({choices.Count}); a multiple-choice question needs at least 2");
            if (!root.TryGetProperty("answer", out var a)) throw new CorpusException($"{at}: missing field \"answer\"");
            int answer;
            switch (a.ValueKind)
            {
                case JsonValueKind.Number:
                    if (!a.TryGetInt32(out answer))
                        throw new CorpusException($"{at}: \"answer\" {a.GetRawText()} is not an integer index");
                    if (answer < 0 || answer >= choices.Count)
                        throw new CorpusException($"{at}: answer {answer} out of range (0..{choices.Count - 1} for {choices.Count} choices)");
                    break;
                case JsonValueKind.String:
                    var s = JsonLine.Text(a, at);
                    answer = choices.IndexOf(s);
                    if (answer < 0) throw new CorpusException($"{at}: answer \"{s}\" is not one of the choices");
                    break;
                default:
                    throw new CorpusException($"{at}: \"answer\" must be an index (integer) or one of the choices (string)");
            }
            return new McItem(JsonLine.Text(q, at), choices, answer, source, line);
        }
    }

    /// <summary>SHA-256 of a file's bytes, in hex: enters cache keys, so the same path with new content is a new key.</summary>
    public static string ContentHash(string path) => SftData.FileFingerprint(path);

    /// <summary>SHA-256 over the items' content (question, choices, answer), for items given in memory.</summary>
    public static string ContentHash(IReadOnlyList<McItem> items)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var item in items)
            sha.AppendData(JsonSerializer.SerializeToUtf8Bytes(new object[] { item.Question, item.Choices, item.Answer }));
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
