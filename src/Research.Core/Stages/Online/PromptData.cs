using Research.Data;

namespace Research.Stages.Online;

/// <summary>
/// A prompt of on-policy training and, for a verifiable reward, its answer; for prefix sampling, a demonstration (a
/// reference completion); the line it came from.
/// </summary>
public sealed record PromptExample(string Prompt, string? Answer, string Source, int Line, string? Demonstration = null);

/// <summary>JSONL of {"prompt": ..., "answer": ..., "demonstration": ...} (the last two optional), one per line; errors name the file and line.</summary>
public static class PromptData
{
    public static IReadOnlyList<PromptExample> Read(string path) =>
        JsonLine.ReadFile(path, Parse, "prompt data not found (expected a .jsonl file of {\"prompt\", \"answer\"} objects)",
            "no prompts (the file is empty); write one JSON object per line with \"prompt\" (and \"answer\" for a verifiable reward)");

    public static PromptExample Parse(string json, string source, int line)
    {
        var at = $"{source}:{line}";
        using var doc = JsonLine.ParseObject(json, at, "\"prompt\" and optionally \"answer\"");
        var root = doc.RootElement;
        if (!root.TryGetProperty("prompt", out var prompt)) throw new CorpusException($"{at}: missing field \"prompt\"");
        if (prompt.ValueKind != System.Text.Json.JsonValueKind.String) throw new CorpusException($"{at}: \"prompt\" must be a string");
        var text = JsonLine.Text(prompt, at + " (\"prompt\")");
        if (text.Length == 0) throw new CorpusException($"{at}: \"prompt\" is empty");
        string? answer = null;
        if (root.TryGetProperty("answer", out var a))
        {
            if (a.ValueKind != System.Text.Json.JsonValueKind.String) throw new CorpusException($"{at}: \"answer\" must be a string");
            answer = JsonLine.Text(a, at + " (\"answer\")");
        }
        string? demonstration = null;
        if (root.TryGetProperty("demonstration", out var d))
        {
            if (d.ValueKind != System.Text.Json.JsonValueKind.String) throw new CorpusException($"{at}: \"demonstration\" must be a string");
            demonstration = JsonLine.Text(d, at + " (\"demonstration\")");
        }
        return new PromptExample(text, answer, source, line, demonstration);
    }
}
