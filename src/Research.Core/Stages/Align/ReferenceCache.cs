using System.Security.Cryptography;
using System.Text;
using Research.Models;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>
/// Reference log-probs computed ONCE with the parent model under no_grad, saved as reference_logps.safetensors in the stage
/// directory with the key sha256(rows, parent's config + weights) in its metadata; a later run (resume) with the same key reads
/// them back. The reference model is loaded, used and disposed before the policy is loaded: never two models in memory.
/// </summary>
public static class ReferenceCache
{
    public const string FileName = "reference_logps.safetensors";

    /// <summary>Times the reference model was run in this process (tests read it).</summary>
    public static int Computations;

    public static (AlignData Data, bool Computed) Prepare(string parentDir, string stageDir, AlignData data, Device device, int batchRows, TextWriter? log = null)
    {
        var key = Key(parentDir, data);
        var path = Path.Combine(stageDir, FileName);
        var n = data.Train.Count + data.Validation.Count;
        if (File.Exists(path))
        {
            using (var f = SafetensorsFile.Open(path))
                if (f.Metadata.TryGetValue("key", out var k) && k == key)
                {
                    var t = Safetensors.Load(path);
                    try
                    {
                        if (t["first"].shape[0] == n)
                            return (data.WithReference(t["first"].data<float>().ToArray(), t["second"].data<float>().ToArray()), false);
                    }
                    finally { foreach (var x in t.Values) x.Dispose(); }
                }
            log?.WriteLine($"align: {path} was made for other data or another parent; recomputing");
        }
        Interlocked.Increment(ref Computations);
        float[] first, second;
        var (model, _) = Checkpoint.Load(parentDir, device);
        using (model)
        {
            var all = data.All.ToArray();
            first = SequenceSums(model, all.Select(i => i.First).ToArray(), batchRows).Sum;
            second = SequenceSums(model, all.Select(i => i.Second).ToArray(), batchRows).Sum;
        }
        Directory.CreateDirectory(stageDir);
        using (var tf = tensor(first))
        using (var ts = tensor(second))
            Safetensors.Save(path, [new("first", tf), new("second", ts)], new Dictionary<string, string> { ["key"] = key });
        log?.WriteLine($"align: reference log-probs of {n} examples cached in {path}");
        return (data.WithReference(first, second), true);
    }

    /// <summary>sha256 of the rows' fingerprint and the parent's config.json and *.safetensors bytes.</summary>
    public static string Key(string parentDir, AlignData data)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes(data.Fingerprint()));
        foreach (var f in Directory.GetFiles(parentDir).Where(f => f.EndsWith(".safetensors") || f.EndsWith(Checkpoint.ConfigFile)).OrderBy(f => f, StringComparer.Ordinal))
        {
            sha.AppendData(Encoding.UTF8.GetBytes(Path.GetFileName(f)));
            using var s = File.OpenRead(f);
            var buf = new byte[1 << 20];
            for (int r; (r = s.Read(buf)) > 0;) sha.AppendData(buf.AsSpan(0, r));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>Summed log-probs and counts of the completion tokens of each row, in eval mode under no_grad.</summary>
    public static (float[] Sum, float[] Count) SequenceSums(CausalLM model, IReadOnlyList<AlignRow> rows, int batchRows)
    {
        var device = model.EmbeddingWeight.device;
        var wasTraining = model.training;
        model.eval();
        using var _ = no_grad();
        var sums = new List<float>(rows.Count);
        var counts = new List<float>(rows.Count);
        try
        {
            for (int s = 0; s < rows.Count; s += batchRows)
            {
                using var scope = NewDisposeScope();
                var (input, target) = PreferenceBatch.Rows(rows.Skip(s).Take(batchRows).ToArray(), model.Config.PadTokenId ?? 0, device);
                var lp = SequenceLogProbs.Compute(model, input, target);
                sums.AddRange(lp.Sum.cpu().data<float>().ToArray());
                counts.AddRange(lp.Count.cpu().data<float>().ToArray());
            }
        }
        finally { if (wasTraining) model.train(); }
        return (sums.ToArray(), counts.ToArray());
    }
}
