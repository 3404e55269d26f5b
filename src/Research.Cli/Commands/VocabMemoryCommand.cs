using System.Diagnostics;
using System.Text.Json;
using Research.Bench;
using Research.Training;

namespace Research.Cli.Commands;

/// <summary>
/// research bench --vocab-memory [--seq 512] [--batch 1] [--loss-chunk-rows N] [--json]: peak RSS of one SFT step of a
/// randomly initialised Qwen3-0.6B-shaped model (see <see cref="VocabMemory"/>). With --loss-chunk-rows it measures that
/// setting in this process (0 = full logits); without it, it runs 0 and the automatic chunk size each in a fresh process
/// of its own (a process's high-water mark only rises) and prints both and the saving.
/// </summary>
public static class VocabMemoryCommand
{
    public static int Execute(CliArgs a)
    {
        var (seq, batch) = (a.GetInt("seq", 512), a.GetInt("batch", 1));
        if (seq < 4 || batch < 1) throw new CliException("--seq must be >= 4 and --batch >= 1");
        if (a.Get("loss-chunk-rows") is not null)
        {
            var rows = a.GetInt("loss-chunk-rows", 0);
            if (rows < 0) throw new CliException("--loss-chunk-rows must be >= 0 (0 = full logits)");
            var r = VocabMemory.Step(rows, batch, seq, Research.Backend.Devices.Choose(a.Get("device")));
            Console.WriteLine(JsonSerializer.Serialize(r, BenchCommand.Json));
            return 0;
        }
        var plain = Child(0, seq, batch, a.Get("device"));
        var chunked = Child(LossChunking.DefaultRows, seq, batch, a.Get("device"));
        if (a.Flags.Contains("json"))
        {
            Console.WriteLine(JsonSerializer.Serialize(new[] { plain, chunked }, BenchCommand.Json));
            return 0;
        }
        Console.WriteLine($"one SFT step (forward + backward), Qwen3-0.6B shape ({plain.Parameters / 1e6:F0}M parameters, vocab {plain.Vocab:N0}), batch {batch} x seq {seq}, fp32, each in a fresh process:");
        foreach (var r in new[] { plain, chunked })
            Console.WriteLine($"  {(r.ChunkRows == 0 ? "full logits" : $"chunked, {r.ChunkRows} rows"),-20} peak RSS {r.PeakRssBytes / 1e9,6:F2} GB (after the model {r.RssAfterModelBytes / 1e9:F2} GB; step {r.StepSeconds:F0} s; loss {r.Loss / (batch * (seq - seq / 4)):F4} per token)");
        Console.WriteLine($"  saving: {(plain.PeakRssBytes - chunked.PeakRssBytes) / 1e9:F2} GB of peak RSS ({1 - chunked.PeakRssBytes / (double)plain.PeakRssBytes:P1}); " +
                          $"of the step's own growth: {1 - (chunked.PeakRssBytes - chunked.RssAfterModelBytes) / (double)(plain.PeakRssBytes - plain.RssAfterModelBytes):P1}");
        return 0;
    }

    static VocabMemoryResult Child(int rows, int seq, int batch, string? device)
    {
        var command = RunCommand.ResearchCommand();
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in command.Skip(1).Concat(["bench", "--vocab-memory", "--loss-chunk-rows", $"{rows}", "--seq", $"{seq}", "--batch", $"{batch}"]))
            psi.ArgumentList.Add(arg);
        if (device is not null) { psi.ArgumentList.Add("--device"); psi.ArgumentList.Add(device); }
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{command[0]} did not start");
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"bench --vocab-memory --loss-chunk-rows {rows} exited with {p.ExitCode}");
        var line = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last();
        return JsonSerializer.Deserialize<VocabMemoryResult>(line, BenchCommand.Json)
               ?? throw new InvalidOperationException($"bench --vocab-memory: no result in '{line}'");
    }
}
