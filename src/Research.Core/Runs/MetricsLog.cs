using System.Text.Json;
using System.Text.Json.Nodes;

namespace Research.Runs;

/// <summary>
/// metrics.jsonl: one JSON object per line ({"step":..,"kind":"train"|"val",...}), appended and
/// flushed line by line. Fields named in <see cref="TimeFields"/> vary run to run; all others are reproducible.
/// </summary>
public sealed class MetricsLog : IDisposable
{
    public static readonly string[] TimeFields = ["time", "elapsed_s", "tokens_per_s"];
    readonly StreamWriter _writer;
    public string Path { get; }

    MetricsLog(string path, StreamWriter writer) { Path = path; _writer = writer; }

    /// <summary>Starts a fresh file (an earlier one is replaced).</summary>
    public static MetricsLog Create(string path)
    {
        AtomicFile.WriteAllText(path, "");
        return Open(path);
    }

    /// <summary>Resumes after <paramref name="step"/>: lines of later steps (written after the checkpoint) are dropped atomically.</summary>
    public static MetricsLog ResumeAfter(string path, long step)
    {
        var kept = File.Exists(path)
            ? File.ReadAllLines(path).Where(l => l.Length > 0 && StepOf(l) is { } s && s <= step).ToArray()
            : [];
        AtomicFile.WriteAllText(path, kept.Length == 0 ? "" : string.Join("\n", kept) + "\n");
        return Open(path);
    }

    static long? StepOf(string line)
    {
        try { return JsonNode.Parse(line)?["step"]?.GetValue<long>(); }
        catch (JsonException) { return null; } // a line torn by a kill: dropped
    }

    static MetricsLog Open(string path) =>
        new(path, new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true });

    public void Write(long step, string kind, IReadOnlyDictionary<string, double> values, double elapsedSeconds, double tokensPerSecond = double.NaN)
    {
        var o = new JsonObject { ["step"] = step, ["kind"] = kind };
        foreach (var (k, v) in values.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            o[k] = double.IsFinite(v) ? v : JsonValue.Create(v.ToString(System.Globalization.CultureInfo.InvariantCulture));
        o["elapsed_s"] = Math.Round(elapsedSeconds, 3);
        if (double.IsFinite(tokensPerSecond)) o["tokens_per_s"] = Math.Round(tokensPerSecond, 1);
        o["time"] = DateTimeOffset.UtcNow.ToString("O");
        _writer.WriteLine(o.ToJsonString());
    }

    /// <summary>Every line of a metrics file, as parsed objects; a line that is not a JSON object is an error naming file:line.</summary>
    public static IReadOnlyList<JsonObject> Read(string path)
    {
        var lines = File.ReadAllLines(path);
        var result = new List<JsonObject>(lines.Length);
        for (var i = 0; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(lines[i]); }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{i + 1}: malformed JSON ({e.Message})", e); }
            result.Add(node as JsonObject ?? throw new InvalidDataException($"{path}:{i + 1}: expected a JSON object"));
        }
        return result;
    }

    public void Dispose() => _writer.Dispose();
}
