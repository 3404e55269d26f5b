using System.Text.Json;
using System.Text.Json.Nodes;

namespace Research.Pipelines;

/// <summary>
/// Why a stage was run rather than reused: what differs between what determines its key now and the same-named stage
/// of the experiment's latest earlier run (its node.json): the code version, config fields, the seed, a parent, a data
/// input or the files it reads. Written into the new node's node.json ("rerun_reason"), logged, and shown by
/// <c>research runs</c>.
/// </summary>
public static class RerunReason
{
    /// <summary>What determines a stage's key, as node.json records it.</summary>
    public sealed record Ingredients(string Kind, int Code, JsonNode? Config, long Seed, IReadOnlyList<string> Parents,
        IReadOnlyList<(string Name, string Fingerprint)> Data, string Files);

    /// <summary>Reads the ingredients node.json holds (older node.json files lack code and files: they read as 0 and "").</summary>
    public static Ingredients? Read(string nodeJsonPath)
    {
        if (!File.Exists(nodeJsonPath)) return null;
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(nodeJsonPath)) as JsonObject;
            if (o is null) return null;
            return new Ingredients(
                o["kind"]?.GetValue<string>() ?? "", o["code"]?.GetValue<int>() ?? 0, o["config"]?.DeepClone(), o["seed"]?.GetValue<long>() ?? 0,
                (o["parents"] as JsonArray)?.Select(p => Path.GetFileName(Path.GetDirectoryName(p!.GetValue<string>()) ?? "")).ToArray() ?? [],
                (o["data"] as JsonArray)?.Select(d => (d!["name"]!.GetValue<string>(), d["fingerprint"]!.GetValue<string>())).ToArray() ?? [],
                o["files"]?.GetValue<string>() ?? "");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException) { return null; }
    }

    /// <summary>The reason recorded beside a node's checkpoint (its node.json), null when none was.</summary>
    public static string? Recorded(string? checkpoint)
    {
        if (checkpoint is null || Path.GetDirectoryName(checkpoint) is not { } dir) return null;
        var path = Path.Combine(dir, "node.json");
        try { return File.Exists(path) ? (JsonNode.Parse(File.ReadAllText(path)) as JsonObject)?["rerun_reason"]?.GetValue<string>() : null; }
        catch (Exception e) when (e is JsonException or InvalidOperationException or IOException) { return null; }
    }

    /// <summary>The differences, most telling first; "no earlier run of this stage" when there is nothing to compare with.</summary>
    public static string Explain(Ingredients? before, Ingredients now, IReadOnlyList<string> parentNames)
    {
        if (before is null) return "no earlier run of this stage";
        var why = new List<string>();
        if (before.Kind != now.Kind) why.Add($"kind {before.Kind} -> {now.Kind}");
        else if (before.Code != now.Code) why.Add($"code version of {now.Kind} {before.Code} -> {now.Code}");
        var a = Flatten(before.Config);
        var b = Flatten(now.Config);
        var changed = a.Keys.Union(b.Keys).Where(k => a.GetValueOrDefault(k) != b.GetValueOrDefault(k)).Order(StringComparer.Ordinal).ToArray();
        foreach (var k in changed.Take(3)) why.Add($"{k} {a.GetValueOrDefault(k) ?? "(absent)"} -> {b.GetValueOrDefault(k) ?? "(absent)"}");
        if (changed.Length > 3) why.Add($"{changed.Length - 3} more config fields");
        if (before.Seed != now.Seed) why.Add($"seed {before.Seed} -> {now.Seed}");
        for (var i = 0; i < now.Parents.Count; i++)
            if (i >= before.Parents.Count || before.Parents[i] != now.Parents[i])
                why.Add($"parent '{(i < parentNames.Count ? parentNames[i] : i.ToString())}' changed");
        foreach (var (name, fp) in now.Data)
            if (!before.Data.Contains((name, fp))) why.Add($"data '{name}' changed");
        if (before.Files != now.Files) why.Add("the files it reads changed");
        return why.Count > 0 ? string.Join("; ", why) : "same key as before, but its output was missing (removed, or the run was interrupted)";
    }

    static Dictionary<string, string?> Flatten(JsonNode? node)
    {
        var result = new Dictionary<string, string?>();
        void Walk(JsonNode? n, string path)
        {
            switch (n)
            {
                case JsonObject o: foreach (var (k, v) in o) Walk(v, path.Length == 0 ? k : $"{path}.{k}"); break;
                default: result[path] = n?.ToJsonString(); break;
            }
        }
        Walk(node, "");
        return result;
    }
}
