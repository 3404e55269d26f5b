using Research.Models;

namespace Research.Stages;

/// <summary>A stage that starts a pipeline from an existing checkpoint directory (made here or elsewhere).</summary>
public sealed partial record CheckpointSource
{
    public string Path { get; init; } = "";
    /// <summary>Hash of the directory's weight and config files: a changed checkpoint changes every key after it.</summary>
    public string Fingerprint { get; init; } = "";

    public static CheckpointSource Of(string dir)
    {
        var full = System.IO.Path.GetFullPath(dir);
        if (!Checkpoint.Exists(full))
            throw new DirectoryNotFoundException($"{full}: not a checkpoint directory (needs config.json and model.safetensors or an index)");
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var f in Directory.GetFiles(full).Where(f => f.EndsWith(".json") || f.EndsWith(".safetensors")).Order(StringComparer.Ordinal))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(System.IO.Path.GetFileName(f)));
            using var s = File.OpenRead(f);
            var buffer = new byte[1 << 20];
            int n;
            while ((n = s.Read(buffer)) > 0) sha.AppendData(buffer, 0, n);
        }
        return new CheckpointSource { Path = full, Fingerprint = Convert.ToHexString(sha.GetHashAndReset())[..16].ToLowerInvariant() };
    }
}

/// <summary>Re-saves the source checkpoint into the node directory, so later stages never depend on a directory outside the workspace.</summary>
public sealed class CheckpointSourceExecutor : IStageExecutor
{
    public string Kind => "checkpoint";
    public Type Options => typeof(CheckpointSource);

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var c = (CheckpointSource)config;
        var (model, tokenizer) = Checkpoint.Load(c.Path);
        using (model) Checkpoint.Save(ctx.FinalCheckpoint, model, tokenizer);
        return new Dictionary<string, double>();
    }
}
