using System.Text.Json;
using Research.Runs;

namespace Research.Pipelines;

/// <summary>
/// Builds the provenance manifest of an export from what it was made of: an <see cref="ExperimentResult"/>, or runs of a
/// run store. Each stage's key ingredients (code version, config, seed, parents, data fingerprints, files) are read from
/// its node.json, which the executor writes beside the checkpoint when the stage runs.
/// </summary>
public static class Manifests
{
    /// <summary>The manifest of an export made from this result (the commit of the current directory's repository).</summary>
    public static Manifest Of(ExperimentResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var stages = result.Runs.SelectMany(run => run.Nodes.Select(n => Stage(run.RunId, n.Name, n.Kind, n.Key, n.Directory, null))).ToList();
        return Manifest.Create(result.Runs.Select(r => r.RunId).ToList(), Seeds(stages), stages, null);
    }

    /// <summary>The manifest of an export made from these runs of the store.</summary>
    public static Manifest Of(RunStore store, IEnumerable<RunRecord> runs)
    {
        ArgumentNullException.ThrowIfNull(store);
        var list = runs.ToList();
        var stages = list.SelectMany(run => store.Nodes(run.Id).Select(n =>
            Stage(run.Id, n.Name, n.Kind, n.Key, n.Checkpoint is { } c ? Path.GetDirectoryName(c) : null, n.Config) with { Seed = run.Seed })).ToList();
        return Manifest.Create(list.Select(r => r.Id).ToList(), list.Select(r => r.Seed).Distinct().Order().ToList(), stages, store.Path);
    }

    /// <summary>The manifest of an export of the whole store (every run).</summary>
    public static Manifest Of(RunStore store)
    {
        ArgumentNullException.ThrowIfNull(store);
        return Of(store, store.Runs());
    }

    static List<long> Seeds(IEnumerable<ManifestStage> stages) => stages.Select(s => s.Seed).Distinct().Order().ToList();

    static ManifestStage Stage(long run, string name, string kind, string key, string? directory, string? storedConfig)
    {
        var ingredients = directory is null ? null : RerunReason.Read(Path.Combine(directory, "node.json"));
        JsonElement? config = storedConfig is not null ? JsonDocument.Parse(storedConfig).RootElement.Clone()
            : ingredients?.Config is { } c ? JsonDocument.Parse(c.ToJsonString()).RootElement.Clone() : null;
        if (ingredients is null)
            return new ManifestStage(run, name, kind, key, Executor.FormatVersion, null, config, 0, [], [], "", directory);
        // node.json names parents by their directories, <kind>-<key>: the key is what follows the last '-'.
        var parents = ingredients.Parents.Select(p => p[(p.LastIndexOf('-') + 1)..]).ToList();
        return new ManifestStage(run, name, kind, key, Executor.FormatVersion, ingredients.Code, config, ingredients.Seed, parents,
            ingredients.Data.Select(d => new ManifestData(d.Name, d.Fingerprint)).ToList(), ingredients.Files, directory);
    }
}
