using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Research.Runs;

namespace Research.Cli.Commands;

/// <summary>research runs / show / compare: read the workspace's run store (schema: docs/runs-json.md).</summary>
public static class RunsCommand
{
    static readonly JsonSerializerOptions Pretty = new() { WriteIndented = true };

    public static int List(CliArgs a)
    {
        using var store = Open(a);
        var runs = store.Runs();
        var elements = store.ElementsByRun();
        var sweeps = store.Submissions();
        if (a.Flags.Contains("json"))
        {
            var doc = new JsonObject
            {
                ["workspace"] = a.Workspace,
                ["runs"] = new JsonArray(runs.Select(r =>
                {
                    var o = RunJson(store, r, withConfig: false);
                    if (elements.TryGetValue(r.Id, out var e)) o["slurm"] = ElementJson(e);
                    return (JsonNode)o;
                }).ToArray()),
                ["sweeps"] = new JsonArray(sweeps.Select(s => (JsonNode)new JsonObject
                {
                    ["id"] = s.Id, ["experiment"] = s.Experiment, ["script"] = s.Script, ["points"] = s.Points, ["created"] = s.Created,
                    ["elements"] = new JsonArray(store.Elements(s.Id).Select(e => (JsonNode)ElementJson(e)).ToArray()),
                }).ToArray()),
            };
            Console.WriteLine(doc.ToJsonString(Pretty));
            return 0;
        }
        if (runs.Count == 0 && sweeps.Count == 0) { Console.WriteLine($"no runs in {a.Workspace}"); return 0; }
        foreach (var s in sweeps)
        {
            var es = store.Elements(s.Id);
            Console.WriteLine($"sweep {s.Id}  {s.Experiment}  {s.Points} point(s) on Slurm  {s.Created}: " +
                string.Join(", ", es.GroupBy(e => e.State).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Count()} {g.Key}")));
            foreach (var e in es) Console.WriteLine($"    point {e.Point,-4} job {e.JobId ?? "-",-12} {e.State,-9} {(e.RunId is long id ? $"run {id}" : "")}");
        }
        foreach (var r in runs)
        {
            var slurm = elements.TryGetValue(r.Id, out var el) ? $"  slurm job {el.JobId} ({el.State})" : "";
            Console.WriteLine($"run {r.Id}  {r.Experiment}  [{r.Point}]  seed {r.Seed}  {r.Status}  {r.Started}{slurm}");
            foreach (var n in store.Nodes(r.Id))
            {
                var m = store.FinalMetrics(n.Key);
                var loss = m.TryGetValue("loss", out var l) ? $"loss {l:F4}" : "";
                Console.WriteLine($"    {n.Name,-24} {n.Kind,-10} {n.Key}  {n.Status,-7} {n.Seconds,7:F1} s  {loss}");
                if (n.Status == "done" && Research.Pipelines.RerunReason.Recorded(n.Checkpoint) is { } why) Console.WriteLine($"        not reused: {why}");
            }
        }
        return 0;
    }

    public static int Show(CliArgs a)
    {
        using var store = Open(a);
        var run = FindRun(store, a, 0);
        var json = RunJson(store, run, withConfig: true);
        if (a.Flags.Contains("json")) { Console.WriteLine(json.ToJsonString(Pretty)); return 0; }
        Console.WriteLine($"run {run.Id}: {run.Experiment} [{run.Point}] seed {run.Seed}, {run.Status}, started {run.Started}, finished {run.Finished ?? "-"}");
        foreach (var node in json["nodes"]!.AsArray())
        {
            Console.WriteLine($"  {node!["name"]} ({node["kind"]} {node["key"]}): {node["status"]}; checkpoint {node["checkpoint"]}");
            Console.WriteLine($"    config {node["config"]!.ToJsonString()}");
            foreach (var (k, v) in node["metrics"]!.AsObject()) Console.WriteLine($"    {k,-32} {v}");
            foreach (var (suite, scores) in node["evaluations"]!.AsObject())
                foreach (var (k, v) in scores!.AsObject()) Console.WriteLine($"    {suite + "/" + k,-32} {v}");
        }
        return 0;
    }

    public static int Compare(CliArgs a)
    {
        using var store = Open(a);
        var left = FindRun(store, a, 0);
        var right = FindRun(store, a, 1);
        var l = Flatten(store, left);
        var r = Flatten(store, right);
        Console.WriteLine($"{"stage / metric",-48} {"run " + left.Id,14} {"run " + right.Id,14} {"delta",12}");
        foreach (var key in l.Keys.Union(r.Keys).Order(StringComparer.Ordinal))
        {
            string Cell(Dictionary<string, double> d) => d.TryGetValue(key, out var v) ? v.ToString("G6", CultureInfo.InvariantCulture) : "-";
            var delta = l.TryGetValue(key, out var x) && r.TryGetValue(key, out var y) ? (y - x).ToString("+0.####;-0.####;0", CultureInfo.InvariantCulture) : "";
            Console.WriteLine($"{key,-48} {Cell(l),14} {Cell(r),14} {delta,12}");
        }
        return 0;
    }

    /// <summary>"stage/metric" and "stage/suite/metric" of a run's final metrics and evaluations.</summary>
    static Dictionary<string, double> Flatten(RunStore store, RunRecord run)
    {
        var d = new Dictionary<string, double>();
        var nodes = store.Nodes(run.Id);
        foreach (var n in nodes)
            foreach (var (k, v) in store.FinalMetrics(n.Key)) d[$"{n.Name}/{k}"] = v;
        var names = nodes.ToDictionary(n => n.Key, n => n.Name);
        foreach (var e in store.Evaluations(run.Id)) d[$"{names.GetValueOrDefault(e.NodeKey, e.NodeKey)}/{e.Suite}/{e.Metric}"] = e.Value;
        return d;
    }

    static JsonObject RunJson(RunStore store, RunRecord r, bool withConfig)
    {
        var evaluations = store.Evaluations(r.Id);
        var nodes = store.Nodes(r.Id).Select(n =>
        {
            var o = new JsonObject
            {
                ["key"] = n.Key, ["name"] = n.Name, ["kind"] = n.Kind, ["status"] = n.Status,
                ["parents"] = JsonNode.Parse(n.Parents), ["seconds"] = Math.Round(n.Seconds, 3), ["checkpoint"] = n.Checkpoint,
                ["metrics"] = new JsonObject(store.FinalMetrics(n.Key).OrderBy(m => m.Key, StringComparer.Ordinal)
                    .Select(m => KeyValuePair.Create(m.Key, (JsonNode?)JsonValue.Create(m.Value)))),
                ["evaluations"] = new JsonObject(evaluations.Where(e => e.NodeKey == n.Key).GroupBy(e => e.Suite)
                    .Select(g => KeyValuePair.Create(g.Key, (JsonNode?)new JsonObject(g.Select(e => KeyValuePair.Create(e.Metric, (JsonNode?)JsonValue.Create(e.Value))))))),
            };
            if (n.Status == "done" && Research.Pipelines.RerunReason.Recorded(n.Checkpoint) is { } why) o["rerun_reason"] = why;
            if (withConfig) o["config"] = JsonNode.Parse(n.Config);
            return (JsonNode)o;
        }).ToArray();
        return new JsonObject
        {
            ["id"] = r.Id, ["experiment"] = r.Experiment, ["point"] = r.Point, ["seed"] = r.Seed, ["status"] = r.Status,
            ["started"] = r.Started, ["finished"] = r.Finished, ["nodes"] = new JsonArray(nodes),
        };
    }

    static JsonObject ElementJson(ElementRecord e) => new()
    {
        ["sweep"] = e.Submission, ["point"] = e.Point, ["job_id"] = e.JobId, ["state"] = e.State, ["run"] = e.RunId, ["updated"] = e.Updated,
    };

    /// <summary>The workspace's store: --store CONN or $RESEARCH_STORE (PostgreSQL), else the workspace's SQLite file.</summary>
    public static RunStore Open(CliArgs a)
    {
        var connection = a.Get("store") ?? Environment.GetEnvironmentVariable(RunStore.ConnectionVariable);
        if (string.IsNullOrWhiteSpace(connection) && !File.Exists(Path.Combine(a.Workspace, RunStore.FileName)))
            throw new CliException($"no run store in {a.Workspace} (run an experiment there first, or pass --workspace DIR)");
        return new RunStore(a.Workspace, string.IsNullOrWhiteSpace(connection) ? null : connection);
    }

    static RunRecord FindRun(RunStore store, CliArgs a, int position)
    {
        if (a.Positional.Count <= position) throw new CliException("which run? give its id (see `research runs`)");
        var text = a.Positional[position];
        if (!long.TryParse(text, out var id)) throw new CliException($"'{text}' is not a run id (see `research runs`)");
        return store.Run(id) ?? throw new CliException($"no run {id} in {a.Workspace}");
    }
}
