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

    /// <summary>Every line of a metrics file, as parsed objects.</summary>
    public static IReadOnlyList<JsonObject> Read(string path) =>
        File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!.AsObject()).ToArray();

    public void Dispose() => _writer.Dispose();
}
