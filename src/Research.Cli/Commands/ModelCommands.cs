using Research.Pipelines;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Research.Eval;
using Research.Models;

namespace Research.Cli.Commands;

/// <summary>
/// <c>research inspect DIR</c>, <c>research generate DIR --prompt TEXT</c> and <c>research eval DIR</c> on any checkpoint
/// directory of a supported family (an HF download, or a stage's final/), with <c>--json</c> for scripts. The work is
/// <see cref="CheckpointTools"/>'s; this file parses arguments and prints.
/// </summary>
public static class ModelCommands
{
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    static string Dir(CliArgs a, string usage) =>
        a.Positional.Count == 1 ? a.Positional[0] : throw new CliException(a.Positional.Count == 0 ? $"missing checkpoint directory\n{usage}" : $"expected one checkpoint directory\n{usage}");

    static void Reject(CliArgs a, string usage, params string[] known)
    {
        foreach (var k in a.Options.Keys)
            if (k != "workspace" && !known.Contains(k)) throw new CliException($"unknown option --{k}\n{usage}");
    }

    static int Print(CliArgs a, JsonObject result, Action<JsonObject> text)
    {
        if (a.Flags.Contains("json")) Console.WriteLine(result.ToJsonString(Indented));
        else text(result);
        return 0;
    }

    public const string InspectUsage = "usage: research inspect DIR [--json]";

    public static int Inspect(CliArgs a)
    {
        Reject(a, InspectUsage);
        return Print(a, CheckpointTools.Inspect(Dir(a, InspectUsage)), info =>
        {
            foreach (var (k, v) in info)
                Console.WriteLine($"{k,-24} {(v is null ? "-" : v is JsonValue jv && jv.TryGetValue<string>(out var s) ? s : v.ToJsonString())}");
        });
    }

    public static readonly string[] GenerateOptions = ["prompt", "max-new-tokens", "temperature", "top-k", "top-p", "seed", "system"];
    public static readonly string[] EvalOptions = ["text", "mc", "few-shot", "max-length", "batch-size", "world-size", "world-seed"];

    public const string GenerateUsage =
        "usage: research generate DIR --prompt TEXT [--chat] [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--json]";

    public static int Generate(CliArgs a)
    {
        Reject(a, GenerateUsage, "prompt", "max-new-tokens", "temperature", "top-k", "top-p", "seed", "system");
        var dir = Dir(a, GenerateUsage);
        var prompt = a.Get("prompt") ?? throw new CliException($"--prompt is required\n{GenerateUsage}");
        var sampling = new SamplingOptions
        {
            MaxNewTokens = a.GetInt("max-new-tokens", 64), Temperature = a.GetDouble("temperature", 0),
            TopK = a.GetInt("top-k", 0), TopP = a.GetDouble("top-p", 1.0), Seed = a.GetInt("seed", 0),
        };
        return Print(a, CheckpointTools.Generate(dir, prompt, a.Flags.Contains("chat"), a.Get("system"), sampling),
            r => Console.WriteLine(r["text"]!.GetValue<string>()));
    }

    public const string EvalUsage = "usage: research eval DIR [--text FILE(.txt|.jsonl)] [--mc FILE.jsonl] [--capabilities [--world-size N] [--world-seed S]] [--few-shot K] [--max-length N] [--batch-size B] [--json]";

    public static int Evaluate(CliArgs a)
    {
        Reject(a, EvalUsage, "text", "mc", "few-shot", "max-length", "batch-size", "world-size", "world-seed");
        var dir = Dir(a, EvalUsage);
        var (text, mc) = (a.Get("text"), a.Get("mc"));
        var capabilities = a.Flags.Contains("capabilities") ? (a.GetInt("world-size", 3000), a.GetInt("world-seed", 1234)) : ((int, int)?)null;
        if (text is null && mc is null && capabilities is null) throw new CliException($"give --text FILE, --mc FILE.jsonl and/or --capabilities\n{EvalUsage}");
        var max = a.Get("max-length") is null ? (int?)null : a.GetInt("max-length", 0);
        return Print(a, CheckpointTools.Evaluate(dir, text, mc, a.GetInt("few-shot", 0), max, a.GetInt("batch-size", 4), capabilities), result =>
        {
            if (result["capabilities"] is JsonObject c)
                foreach (var (suite, metrics) in c)
                    if (metrics is JsonObject values)
                        Console.WriteLine($"{suite,-22}" + string.Join(", ", values.Select(kv => kv.Value!.GetValue<double>() is var v && v == Math.Floor(v) && kv.Key == "count"
                            ? $"{kv.Key} {v:F0}" : string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {v:F4}"))));
            if (result["text"] is JsonObject t)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"text  {t["file"]}: perplexity {t["perplexity"]!.GetValue<double>():F4}, bits/byte {t["bits_per_byte"]!.GetValue<double>():F4} ({t["tokens"]} tokens, {t["documents"]} documents)"));
            if (result["mc"] is JsonObject m)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"mc    {m["file"]}: acc {m["acc"]!.GetValue<double>():F4}, acc_norm {m["acc_norm"]!.GetValue<double>():F4} ({m["items"]} items)"));
        });
    }
}
