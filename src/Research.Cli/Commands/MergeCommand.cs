using System.Globalization;
using Research.Stages.Merge;

namespace Research.Cli.Commands;

/// <summary>
/// <c>research merge CONFIG [--out DIR] [--shard-size BYTES]</c>: merges the checkpoints a mergekit-style
/// YAML (or .json) config names into DIR (default: ./merged next to the working directory).
/// </summary>
public static class MergeCommand
{
    public const string Usage = "usage: research merge CONFIG.yml [--out DIR] [--shard-size BYTES]";

    /// <summary><paramref name="args"/> may start with "merge" (the whole command line) or not.</summary>
    public static int Execute(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var rest = args.Length > 0 && args[0] == "merge" ? args[1..] : args;
        if (rest.Contains("--help") || rest.Contains("-h")) { Console.Out.WriteLine(Usage); return 0; }
        CliArgs parsed;
        try { parsed = CliArgs.Parse(rest, [], "out", "shard-size"); }
        catch (CliException e) { return Fail(e.Message); }
        if (parsed.Positional.Count != 1) return Fail(parsed.Positional.Count == 0 ? "missing config path" : "expected one config path");
        var outDir = parsed.Get("out") ?? "merged";
        var shard = StreamingMerge.DefaultShardBytes;
        if (parsed.Get("shard-size") is { } s && (!long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out shard) || shard <= 0))
            return Fail($"--shard-size expects a positive number of bytes, got '{s}'");

        try
        {
            var config = MergeConfig.Load(parsed.Positional[0]);
            var report = StreamingMerge.Run(config, outDir, shard, Console.Out.WriteLine);
            Console.Out.WriteLine($"wrote {report.OutDir}");
            return 0;
        }
        catch (Exception e) when (e is InvalidDataException or Research.Models.SafetensorsException or FileNotFoundException
                                      or DirectoryNotFoundException or ArgumentException)
        {
            Console.Error.WriteLine($"research merge: {e.Message}");
            return 1;
        }
    }

    static int Fail(string message)
    {
        Console.Error.WriteLine($"research merge: {message}");
        Console.Error.WriteLine(Usage);
        return 2;
    }
}
