using System.Globalization;
using System.Text.Json;
using Research.Data;

namespace Research.Stages.Uda;

/// <summary>One example of a classification file: its text, its label (null when the line has none: unlabelled target
/// text), its domain, and the file and 1-based line it came from.</summary>
public sealed record LabeledText(string Text, string? Label, string Domain, string Source, int Line);

/// <summary>
/// Classification data as JSONL, one object per line: <c>{"text": str, "label": str | int | null, "domain": str}</c>. A label
/// given as an integer is its decimal text ("0", "1"). Domains select source and target (<see cref="InDomain"/>); a domain
/// written "general/animals" belongs to "general" and is its own source for multi-source methods (M3SDA).
/// Malformed input is a <see cref="CorpusException"/> naming the file and line.
/// </summary>
public static class ClassificationData
{
    const string Expected = "\"text\" (string), \"label\" (string, integer or null) and \"domain\" (string)";

    public static IReadOnlyList<LabeledText> Read(string path) =>
        JsonLine.ReadFile(path, Parse,
            "classification data not found (expected a .jsonl file of {\"text\", \"label\", \"domain\"} objects)",
            "no examples (the file is empty)");

    static LabeledText Parse(string line, string file, int lineNo)
    {
        var at = $"{file}:{lineNo}";
        using var doc = JsonLine.ParseObject(line, at, Expected);
        var root = doc.RootElement;
        foreach (var p in root.EnumerateObject())
            if (p.Name is not ("text" or "label" or "domain"))
                throw new CorpusException($"{at}: unknown field \"{p.Name}\" (expected {Expected})");
        string Str(string name)
        {
            if (!root.TryGetProperty(name, out var v)) throw new CorpusException($"{at}: missing field \"{name}\" (expected {Expected})");
            if (v.ValueKind != JsonValueKind.String) throw new CorpusException($"{at}: field \"{name}\" must be a string, got {v.ValueKind.ToString().ToLowerInvariant()}");
            return JsonLine.Text(v, at);
        }
        var text = Str("text");
        if (string.IsNullOrWhiteSpace(text)) throw new CorpusException($"{at}: field \"text\" is empty");
        var domain = Str("domain");
        if (string.IsNullOrWhiteSpace(domain)) throw new CorpusException($"{at}: field \"domain\" is empty");
        string? label = null;
        if (!root.TryGetProperty("label", out var l)) throw new CorpusException($"{at}: missing field \"label\" (use null for unlabelled text)");
        switch (l.ValueKind)
        {
            case JsonValueKind.Null: break;
            case JsonValueKind.String:
                label = JsonLine.Text(l, at);
                if (label.Length == 0) throw new CorpusException($"{at}: field \"label\" is an empty string");
                break;
            case JsonValueKind.Number when l.TryGetInt64(out var n):
                label = n.ToString(CultureInfo.InvariantCulture);
                break;
            default:
                throw new CorpusException($"{at}: field \"label\" must be a string, an integer or null, got {(l.ValueKind == JsonValueKind.Number ? "a non-integer number" : l.ValueKind.ToString().ToLowerInvariant())}");
        }
        return new LabeledText(text, label, domain, file, lineNo);
    }

    /// <summary>Whether <paramref name="domain"/> is <paramref name="selector"/> or one of its parts ("general/animals" is in "general").</summary>
    public static bool InDomain(string domain, string selector) =>
        domain == selector || domain.StartsWith(selector + "/", StringComparison.Ordinal);

    /// <summary>The examples of a domain; none is an error naming the file and the domains it has.</summary>
    public static IReadOnlyList<LabeledText> Of(IReadOnlyList<LabeledText> all, string selector, string path)
    {
        var some = all.Where(x => InDomain(x.Domain, selector)).ToArray();
        if (some.Length == 0)
            throw new CorpusException($"{path}: no example of domain \"{selector}\" (domains: {string.Join(", ", all.Select(x => x.Domain).Distinct().Order(StringComparer.Ordinal))})");
        return some;
    }

    /// <summary>Sorted distinct labels of the labelled examples (the head's classes); none is an error naming the file.</summary>
    public static IReadOnlyList<string> LabelsOf(IReadOnlyList<LabeledText> examples, string path)
    {
        var labels = examples.Where(x => x.Label is not null).Select(x => x.Label!).Distinct().Order(StringComparer.Ordinal).ToArray();
        if (labels.Length == 0) throw new CorpusException($"{path}: no labelled example to train the classifier on");
        return labels;
    }

    /// <summary>Each labelled example's class index; a label outside <paramref name="labels"/> is an error naming its line.</summary>
    public static long[] Indices(IReadOnlyList<LabeledText> examples, IReadOnlyList<string> labels)
    {
        var index = labels.Select((l, i) => (l, i)).ToDictionary(x => x.l, x => (long)x.i, StringComparer.Ordinal);
        return examples.Select(x => x.Label is null ? throw new CorpusException($"{x.Source}:{x.Line}: this example has no label, and this use needs one")
            : index.TryGetValue(x.Label, out var i) ? i
            : throw new CorpusException($"{x.Source}:{x.Line}: label \"{x.Label}\" is not one of the classifier's labels ({string.Join(", ", labels)})")).ToArray();
    }

    /// <summary>SHA-256 of the file's bytes (what enters a stage key).</summary>
    public static string FileFingerprint(string path) => SftData.FileFingerprint(path);
}
