using System.Text.Json;
using Research.Runs;

namespace Research.Pipelines;

/// <summary>Whether the current code and data would produce a stage of a manifest again: "same", "changed" or "unknown".</summary>
public sealed record StageVerdict(string Name, string Kind, string Key, string? KeyNow, string Status, IReadOnlyList<string> Reasons, IReadOnlyList<string> Notes)
{
    public bool Same => Status == ProvenanceCheck.Same;
}

/// <summary>
/// research provenance: recomputes the key of every stage a manifest names from its recorded ingredients, with the code
/// versions of this build (<see cref="StageCode"/>, the executor's key format) and the data fingerprints that can be
/// read now, and says per stage whether the key is still the one recorded (the stage would be reused as it is) or why not.
/// </summary>
public static class ProvenanceCheck
{
    public const string Same = "same", Changed = "changed", Unknown = "unknown";

    /// <param name="codeVersion">The code version of a kind now (default: <see cref="StageCode.Version"/>).</param>
    /// <param name="currentData">The fingerprint of a data input now, by its name; null when it cannot be read (the recorded one is used, and a note says so).</param>
    public static IReadOnlyList<StageVerdict> Check(Manifest manifest, Func<string, int>? codeVersion = null, Func<string, string?>? currentData = null)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        codeVersion ??= StageCode.Version;
        var keysNow = new Dictionary<string, string>();   // recorded key -> key now, for parents
        var names = manifest.Stages.GroupBy(s => s.Key).ToDictionary(g => g.Key, g => g.First().Name);
        var verdicts = new List<StageVerdict>();
        foreach (var s in manifest.Stages.DistinctBy(s => s.Key))
        {
            if (s.Code is not int code || s.Config is not { } config)
            {
                verdicts.Add(new(s.Name, s.Kind, s.Key, null, Unknown,
                    [$"its node.json ({(s.Directory is null ? "no node directory" : Path.Combine(s.Directory, "node.json"))}) was not readable when the export was made, so its ingredients are unknown"], []));
                continue;
            }
            var configJson = JsonSerializer.Serialize(config);
            var fingerprints = s.Data.Select(d => d.Fingerprint).ToList();
            var recomputed = StageKey.Of(s.KeyFormat, s.Kind, code, configJson, s.Seed, s.Parents, fingerprints, s.Files);
            if (recomputed != s.Key)
            {
                verdicts.Add(new(s.Name, s.Kind, s.Key, null, Unknown,
                    [$"its recorded ingredients give key {recomputed}, not the recorded {s.Key} (node.json was rewritten by another run, or the manifest was edited)"], []));
                continue;
            }
            var reasons = new List<string>();
            var notes = new List<string>();
            if (s.KeyFormat != Executor.FormatVersion) reasons.Add($"key format {s.KeyFormat} -> {Executor.FormatVersion}");
            var codeNow = codeVersion(s.Kind);
            if (codeNow != code) reasons.Add($"code version of {s.Kind} {code} -> {codeNow}");
            var parentsNow = s.Parents.Select(p => keysNow.GetValueOrDefault(p, p)).ToList();
            for (var i = 0; i < s.Parents.Count; i++)
                if (parentsNow[i] != s.Parents[i]) reasons.Add($"parent '{names.GetValueOrDefault(s.Parents[i], s.Parents[i])}' changed");
            var dataNow = new List<string>();
            foreach (var d in s.Data)
            {
                var now = currentData?.Invoke(d.Name);
                if (now is null) notes.Add($"data '{d.Name}' not re-read (fingerprint {d.Fingerprint[..Math.Min(12, d.Fingerprint.Length)]} as recorded; give its path with --data {d.Name}=PATH to check it)");
                else if (now != d.Fingerprint) reasons.Add($"data '{d.Name}' changed");
                dataNow.Add(now ?? d.Fingerprint);
            }
            if (s.Files.Length > 0) notes.Add("the files its options name were not re-read (their fingerprint as recorded)");
            var keyNow = StageKey.Of(Executor.FormatVersion, s.Kind, codeNow, configJson, s.Seed, parentsNow, dataNow, s.Files);
            keysNow[s.Key] = keyNow;
            verdicts.Add(new(s.Name, s.Kind, s.Key, keyNow, keyNow == s.Key ? Same : Changed, reasons, notes));
        }
        return verdicts;
    }

    /// <summary>The fingerprint of a text file, a folder of .txt files or a JSONL file, as a data source read from that path gets.</summary>
    public static string FingerprintOf(string path) => Data.Corpus.Load(path).Fingerprint;
}
