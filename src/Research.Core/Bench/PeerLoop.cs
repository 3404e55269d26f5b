using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Research.Training;

namespace Research.Bench;

/// <summary>What the PyTorch peer said about itself: torch version, the BLAS library it mapped, its attention and optimizer.</summary>
public sealed record PeerInfo(string Torch, string Blas, string Attention, string Optimizer, int Threads, long Parameters);

/// <summary>
/// The same model, batch shape, optimizer and steps trained in PyTorch eager (Debian's python3-torch; Bench/peer/llama_peer.py,
/// embedded in this assembly), as a child process that runs one round of steps per request, so the bench interleaves its
/// rounds with its own loops. <see cref="Start"/> returns null, with the reason, where python3 cannot import torch.
/// </summary>
public sealed class PeerLoop : IDisposable
{
    public const string Python = "/usr/bin/python3";
    readonly Process _process;
    public PeerInfo Info { get; }

    PeerLoop(Process process, PeerInfo info) { _process = process; Info = info; }

    /// <summary>The peer's config: the model's shape, the batch, the trainer's AdamW settings, the torch threads.</summary>
    public static JsonObject Config(BenchSize s, TrainConfig t, int warmup, int threads)
    {
        var m = s.Model;
        return new JsonObject
        {
            ["vocab"] = m.VocabSize, ["hidden"] = m.HiddenSize, ["intermediate"] = m.IntermediateSize, ["layers"] = m.NumHiddenLayers,
            ["heads"] = m.NumAttentionHeads, ["kv_heads"] = m.NumKeyValueHeads, ["head_dim"] = m.HeadDim, ["rope_theta"] = m.RopeTheta,
            ["rms_eps"] = m.RmsNormEps, ["tied"] = m.TieWordEmbeddings, ["batch"] = s.BatchSize, ["seq"] = s.BlockLength,
            ["lr"] = t.LearningRate, ["weight_decay"] = t.WeightDecay, ["beta1"] = t.Beta1, ["beta2"] = t.Beta2, ["eps"] = t.Epsilon,
            ["grad_clip"] = t.GradClip, ["warmup"] = warmup, ["threads"] = threads, ["seed"] = 1,
        };
    }

    /// <summary>Starts the peer and waits for its warm-up; null (and why) where python3 with torch is missing or the peer fails.</summary>
    public static PeerLoop? Start(JsonObject config, out string? reason)
    {
        reason = null;
        if (!File.Exists(Python))
        {
            reason = $"{Python} is missing; scripts/setup/python-refs.sh installs python3-torch";
            return null;
        }
        var script = Path.Combine(Path.GetTempPath(), $"research-llama-peer-{Environment.ProcessId}.py");
        using (var resource = typeof(PeerLoop).Assembly.GetManifestResourceStream("Research.Bench.llama_peer.py")
                              ?? throw new InvalidOperationException("Research.Core lacks its embedded Bench/peer/llama_peer.py; rebuild it"))
        using (var file = File.Create(script))
            resource.CopyTo(file);
        var psi = new ProcessStartInfo(Python) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(config.ToJsonString());
        psi.Environment["OMP_NUM_THREADS"] = config["threads"]!.ToString();
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"{Python} did not start");
        var errors = p.StandardError.ReadToEndAsync();
        var first = p.StandardOutput.ReadLine();
        File.Delete(script);                                  // python has read it (it answered, or it ended)
        if (first is null || !first.StartsWith('{'))
        {
            p.WaitForExit();
            var err = errors.Result.Trim().Split('\n').LastOrDefault() ?? "";
            reason = err.Contains("No module named 'torch'")
                ? $"{Python} cannot import torch; scripts/setup/python-refs.sh installs Debian's python3-torch"
                : $"the PyTorch peer exited with {p.ExitCode}: {err}";
            p.Dispose();
            return null;
        }
        var info = JsonSerializer.Deserialize<PeerInfo>(first, BenchJson.Options)!;
        return new PeerLoop(p, info);
    }

    /// <summary>Runs <paramref name="steps"/> steps in the peer; returns their seconds (timed inside the peer).</summary>
    public double Round(int steps)
    {
        _process.StandardInput.WriteLine(steps);
        _process.StandardInput.Flush();
        var line = _process.StandardOutput.ReadLine() ?? throw new InvalidOperationException($"the PyTorch peer ended during a round (exit {(_process.HasExited ? _process.ExitCode : -1)})");
        return JsonNode.Parse(line)!["seconds"]!.GetValue<double>();
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.StandardInput.WriteLine("quit");
                _process.StandardInput.Flush();
                if (!_process.WaitForExit(10_000)) _process.Kill();
            }
        }
        catch (IOException) { }
        _process.Dispose();
    }
}
