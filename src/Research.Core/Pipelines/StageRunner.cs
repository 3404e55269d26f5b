using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Research.Models;
using Research.Runs;
using Research.Training;

namespace Research.Pipelines;

/// <summary>How a stage ended in this run: trained now, resumed and finished, or reused from an earlier run.</summary>
public sealed record StageOutcome(string Name, string Key, string Directory, string Status, IReadOnlyDictionary<string, double> Metrics)
{
    public string Checkpoint => Path.Combine(Directory, Trainer.FinalDir);
}

/// <summary>
/// Runs a training stage in a directory named by its key (a hash of everything that determines its
/// output): a finished stage is reused, an interrupted one resumes from its last checkpoint.
/// </summary>
public static class StageRunner
{
    public const string DoneFile = "done.json";

    public static string Key(params string[] parts) =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join("\u001f", parts))))[..16].ToLowerInvariant();

    public static StageOutcome Run(string root, string name, string key, Func<string, TrainResult> train, TextWriter log)
    {
        var dir = Path.Combine(root, $"{name}-{key}");
        var done = Path.Combine(dir, DoneFile);
        if (File.Exists(done) && Models.Checkpoint.Exists(Path.Combine(dir, Trainer.FinalDir)))
        {
            var cached = JsonSerializer.Deserialize<Dictionary<string, double>>(File.ReadAllText(done)) ?? [];
            log.WriteLine($"{name}: cached ({dir})");
            return new StageOutcome(name, key, dir, "cached", cached);
        }
        var result = train(dir);
        AtomicFile.WriteAllText(done, JsonSerializer.Serialize(result.LastMetrics.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary()));
        return new StageOutcome(name, key, dir, result.ResumedFrom > 0 ? "resumed" : "done", result.LastMetrics);
    }
}
