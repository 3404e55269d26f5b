using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Research.Pipelines;

/// <summary>
/// Sets config fields of stages by name, for sweeps: "replay" sets the field Replay of every stage whose
/// config has one; "adapt-no-replay:train.learning_rate" only in that stage. Names match properties
/// case-insensitively with underscores ignored; a name no stage has is an error naming it.
/// </summary>
public static class Overrides
{
    public static IReadOnlyList<Stage> Apply(IReadOnlyList<Stage> leaves, IReadOnlyDictionary<string, double> values)
    {
        var memo = new Dictionary<Stage, Stage>(ReferenceEqualityComparer.Instance);
        var used = new HashSet<string>();
        Stage Rewrite(Stage s)
        {
            if (memo.TryGetValue(s, out var done)) return done;
            var parents = s.Parents.Select(Rewrite).ToArray();
            var config = JsonNode.Parse(s.ConfigJson)!.AsObject();
            var changed = false;
            foreach (var (name, value) in values)
            {
                var colon = name.IndexOf(':');
                var (target, path) = colon >= 0 ? (name[..colon], name[(colon + 1)..]) : ((string?)null, name);
                if (target is not null && target != s.Name) continue;
                if (Set(config, path.Split('.'), value)) { used.Add(name); changed = true; }
            }
            var rewritten = changed
                ? s with { Config = config.Deserialize(s.Config.GetType(), Options)!, Parents = parents }
                : parents.SequenceEqual(s.Parents) ? s : s with { Parents = parents };
            memo[s] = rewritten;
            return rewritten;
        }
        var result = leaves.Select(Rewrite).ToArray();
        var unused = values.Keys.Where(k => !used.Contains(k)).ToArray();
        if (unused.Length > 0)
            throw new ArgumentException($"sweep parameter '{unused[0]}' matches no config field of any stage in the pipeline");
        return result;
    }

    static readonly JsonSerializerOptions Options = new() { Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } };

    static string Norm(string s) => s.Replace("_", "").ToLowerInvariant();

    static bool Set(JsonObject o, string[] path, double value)
    {
        var prop = o.Select(kv => kv.Key).FirstOrDefault(k => Norm(k) == Norm(path[0]));
        if (prop is null) return false;
        if (path.Length > 1) return o[prop] is JsonObject inner && Set(inner, path[1..], value);
        var old = o[prop];
        o[prop] = old is JsonValue v && v.GetValueKind() == JsonValueKind.Number && double.IsInteger(value) && !v.ToJsonString().Contains('.')
            ? JsonValue.Create(Convert.ToInt64(value, CultureInfo.InvariantCulture))
            : JsonValue.Create(value);
        return true;
    }
}
