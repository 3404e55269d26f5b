using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Research.Backend;
using Research.Models;
using Research.Runs;
using Research.Stages;
using Research.Training;

namespace Research.Pipelines;

/// <summary>How one node ended in one run.</summary>
public sealed record NodeResult(string Name, string Kind, string Key, string Status, string Directory,
    IReadOnlyDictionary<string, double> Metrics, IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>> Evaluations)
{
    public string Checkpoint => Path.Combine(Directory, Trainer.FinalDir);
}

/// <summary>One run: a sweep point under one seed, and its stages.</summary>
public sealed record RunResult(long RunId, SweepPoint Point, long Seed, IReadOnlyList<NodeResult> Nodes)
{
    public NodeResult Node(string name) => Nodes.FirstOrDefault(n => n.Name == name)
        ?? throw new KeyNotFoundException($"run {RunId}: no stage named '{name}' (stages: {string.Join(", ", Nodes.Select(n => n.Name))})");
}

public sealed record ExperimentResult(string Experiment, IReadOnlyList<RunResult> Runs);

/// <summary>
/// Runs experiments on this machine, sweep point after sweep point. Every node lives in a directory
/// named by its key: a hash of its kind, config, seed, parents' keys and data fingerprints (and the
/// format version). A finished node is reused by any run that asks for the same key; an interrupted
/// one resumes from its last checkpoint; a changed config re-runs that node and its descendants only.
/// Each run, node, metric and evaluation is recorded in the workspace's run store.
/// </summary>
public sealed class Executor
{
    /// <summary>Bump when a change makes old node outputs invalid.</summary>
    public const int FormatVersion = 1;
    public const string NodesDir = "nodes";
    internal const string DoneFile = "done.json";
    readonly Dictionary<Type, IStageExecutor> _kinds = new();

    public ExecutorOptions Options { get; }

    public Executor(ExecutorOptions options)
    {
        Options = options;
        foreach (var k in new IStageExecutor[] { new PretrainExecutor(), new AdaptExecutor(), new CheckpointSourceExecutor(), new MergeExecutor(), new DistillExecutor(), new TuneExecutor(), new AlignExecutor() }) Register(k);
        Register(new DoReMiExecutor());
        Register(new Research.Stages.Online.GrpoExecutor());
        Register(new Research.Stages.Online.OnlineDpoExecutor());
        Register(new Research.Stages.Reward.RewardExecutor());
        Register(new Research.Stages.Reward.PairsExecutor());
        foreach (var k in new IStageExecutor[] { new Research.Stages.Uda.ClassifyExecutor(), new Research.Stages.Uda.UdaExecutor(), new Research.Stages.Uda.TentExecutor() }) Register(k);
    }

    /// <summary>Adds a kind of stage: stages whose options are <see cref="IStageExecutor.Options"/> run through it.</summary>
    public Executor Register(IStageExecutor kind)
    {
        if (_kinds.Values.FirstOrDefault(k => k.Kind == kind.Kind && k.Options != kind.Options) is { } other)
            throw new ArgumentException($"stage kind '{kind.Kind}' is already run by {other.GetType().Name} for {other.Options.Name} options");
        _kinds[kind.Options] = kind;
        return this;
    }

    /// <summary>
    /// The content address of a stage under an experiment seed: its kind and the version of its code
    /// (<paramref name="codeVersion"/>, <see cref="StageCode.Version"/> unless given), config, seed, parents' keys, data and files.
    /// The config is the one that trains on a device with <paramref name="bf16"/> support (this CPU's unless given,
    /// <see cref="Stage.On"/>): a bf16 stage that falls back to float32 has the key of the same stage asked for in float32.
    /// </summary>
    public static string Key(Stage stage, long seed, IReadOnlyDictionary<Stage, string>? parentKeys = null, Func<string, int>? codeVersion = null,
        Bf16Support? bf16 = null)
    {
        codeVersion ??= StageCode.Version;
        bf16 ??= Bf16Support.ThisCpu;
        var parents = stage.Parents.Select(p => parentKeys is not null && parentKeys.TryGetValue(p, out var k) ? k : Key(p, seed, null, codeVersion, bf16));
        return StageKey.Of(FormatVersion, stage.Kind, codeVersion(stage.Kind), stage.On(bf16).ConfigJson, seed, parents,
            stage.Data.Select(d => d.Fingerprint), stage.Config is IReadsFiles f ? f.FilesFingerprint() : "");
    }

    /// <summary>
    /// Runs the experiment: here, point after point (or only <see cref="ExecutorOptions.Point"/>), or, with the
    /// Slurm backend, as one job array whose elements run the same script for one point each.
    /// </summary>
    public ExperimentResult Run(Experiment experiment) =>
        Options.Remote is { } remote && Options.Point is null
            ? remote.Run(experiment, Options)
            : RunHere(experiment);

    ExperimentResult RunHere(Experiment experiment)
    {
        var workspace = Path.GetFullPath(Options.Workspace);
        using var store = new RunStore(workspace, Options.Store);
        var device = Devices.Choose(Options.Device);
        var runs = new List<RunResult>();
        var indices = Enumerable.Range(0, experiment.Points.Count).ToArray();
        if (Options.Point is int only)
        {
            if (only < 0 || only >= experiment.Points.Count)
                throw new ArgumentException($"experiment '{experiment.Name}' has {experiment.Points.Count} sweep point(s), numbered 0 to {experiment.Points.Count - 1}; there is no point {only}");
            indices = [only];
        }
        foreach (var index in indices)
        {
            var point = experiment.Points[index];
            var seed = experiment.SeedOf(point);
            var runId = store.StartRun(experiment.Name, point.Label, seed);
            Options.Log.WriteLine($"run {runId}: {experiment.Name} [{point.Label}] seed {seed}");
            if (Options.Submission is long submission)
                store.SetElement(submission, index, ElementStates.Running, ElementStates.JobIdFromEnvironment(), runId);
            using var heartbeat = new RunHeartbeat(() => new RunStore(workspace, Options.Store), runId);
            try
            {
                runs.Add(new RunResult(runId, point, seed, RunPoint(experiment, point, seed, runId, store, workspace, device)));
                store.FinishRun(runId, "done");
                if (Options.Submission is long s) store.SetElement(s, index, ElementStates.Done);
            }
            catch
            {
                store.FinishRun(runId, "failed");
                if (Options.Submission is long s) store.SetElement(s, index, ElementStates.Failed);
                throw;
            }
        }
        return new ExperimentResult(experiment.Name, runs);
    }

    IReadOnlyList<NodeResult> RunPoint(Experiment e, SweepPoint point, long seed, long runId, RunStore store, string workspace, TorchSharp.torch.Device device)
    {
        var order = new List<Stage>();
        var seen = new HashSet<Stage>(ReferenceEqualityComparer.Instance);
        foreach (var leaf in point.Leaves)
            foreach (var s in leaf.Closure())
                if (seen.Add(s)) order.Add(s);
        var names = order.GroupBy(s => s.Name).FirstOrDefault(g => g.Count() > 1);
        if (names is not null)
            throw new ArgumentException($"experiment '{e.Name}': two different stages are named '{names.Key}'; give each a name of its own (Stage.Named)");

        var keys = new Dictionary<Stage, string>(ReferenceEqualityComparer.Instance);
        var dirs = new Dictionary<Stage, string>(ReferenceEqualityComparer.Instance);
        var results = new List<NodeResult>();
        var bf16 = Bf16Support.For(device);
        foreach (var stage in order)
        {
            if (!_kinds.TryGetValue(stage.Config.GetType(), out var kind))
                throw new InvalidOperationException(
                    $"stage '{stage.Name}': no executor runs {stage.Config.GetType().Name} options (known: {string.Join(", ", _kinds.Values.Select(k => $"{k.Options.Name} ({k.Kind})"))}); register one with Executor.Register");
            var key = keys[stage] = Key(stage, seed, keys, null, bf16);
            var dir = dirs[stage] = Path.Combine(workspace, NodesDir, $"{stage.Kind}-{key}");
            var parents = JsonSerializer.Serialize(stage.Parents.Select(p => keys[p]));
            var record = new NodeRecord(runId, key, stage.Name, stage.Kind, stage.On(bf16).ConfigJson, parents, "running", Now(), null, 0, Path.Combine(dir, Trainer.FinalDir));
            var (status, metrics, seconds) = RunNode(stage, stage.On(bf16).ConfigJson, kind, key, dir, stage.Parents.Select(p => Path.Combine(dirs[p], Trainer.FinalDir)).ToArray(), seed, device,
                () => store.UpsertNode(record), now => RerunReason.Explain(Previous(store, e.Name, runId, stage.Name), now, stage.Parents.Select(p => p.Name).ToArray()));
            store.UpsertNode(record with { Status = status, Finished = Now(), Seconds = seconds });
            var metricsFile = Path.Combine(dir, Trainer.MetricsFile);
            if (File.Exists(metricsFile)) store.PutMetrics(key, ReadMetrics(key, metricsFile));
            var evaluations = Evaluate(e, stage, key, dir, device, stage.Parents.Count > 0 ? Path.Combine(dirs[stage.Parents[0]], Trainer.FinalDir) : null);
            store.PutEvaluations(evaluations.SelectMany(s => s.Value.Select(m => new EvaluationRecord(runId, key, s.Key, m.Key, m.Value))));
            Options.Log.WriteLine($"  {stage.Name} ({stage.Kind} {key}): {status}{(seconds > 0 ? $" in {seconds:F1} s" : "")}");
            results.Add(new NodeResult(stage.Name, stage.Kind, key, status, dir, metrics, evaluations));
        }
        return results;
    }

    /// <summary>What determined the key of the same-named stage in this experiment's latest earlier run (null when none).</summary>
    static RerunReason.Ingredients? Previous(RunStore store, string experiment, long runId, string stageName)
    {
        foreach (var run in store.Runs().Where(r => r.Experiment == experiment && r.Id != runId).OrderByDescending(r => r.Id))
            if (store.Nodes(run.Id).FirstOrDefault(n => n.Name == stageName) is { Checkpoint: { } checkpoint })
                return RerunReason.Read(Path.Combine(Path.GetDirectoryName(checkpoint) ?? "", "node.json"));
        return null;
    }

    (string Status, IReadOnlyDictionary<string, double> Metrics, double Seconds) RunNode(
        Stage stage, string configJson, IStageExecutor kind, string key, string dir, string[] parents, long seed, TorchSharp.torch.Device device, Action markRunning,
        Func<RerunReason.Ingredients, string> reason)
    {
        var done = Path.Combine(dir, DoneFile);
        // Done: cached. Checkpoints a kill left between done.json and their removal are removed below, under the lock.
        if (IsDone(dir) && !Directory.Exists(Path.Combine(dir, Path.GetDirectoryName(Trainer.LastDir)!))) return ("cached", ReadDone(done), 0);
        Directory.CreateDirectory(dir);
        // One process per node at a time: a second process asking for the same key waits, then finds it done.
        using var nodeLock = NodeLock.Acquire(NodeLock.PathOf(dir), Options.Log, stage.Name);
        foreach (var name in FileLeftovers.Remove(dir)) Options.Log.WriteLine($"  {stage.Name}: removed {name}, left by a killed run");
        if (IsDone(dir))
        {
            Trainer.RemoveCheckpoints(dir);   // a kill between done.json and their removal left them
            return ("cached", ReadDone(done), 0);
        }
        Directory.CreateDirectory(dir);   // again: `research gc` may have removed it while this process waited for the lock
        markRunning();
        var files = stage.Config is IReadsFiles f ? f.FilesFingerprint() : "";
        var why = reason(new RerunReason.Ingredients(stage.Kind, StageCode.Version(stage.Kind), System.Text.Json.Nodes.JsonNode.Parse(configJson), seed,
            parents.Select(p => Path.GetFileName(Path.GetDirectoryName(p) ?? "")).ToArray(), stage.Data.Select(d => (d.Name, d.Fingerprint)).ToArray(), files));
        Options.Log.WriteLine($"  {stage.Name} ({stage.Kind} {key}): running ({why})");
        AtomicFile.WriteAllText(Path.Combine(dir, "node.json"), JsonSerializer.Serialize(new
        {
            name = stage.Name, kind = stage.Kind, key, code = StageCode.Version(stage.Kind), seed, config = JsonDocument.Parse(configJson).RootElement,
            parents, data = stage.Data.Select(d => new { name = d.Name, fingerprint = d.Fingerprint }), files, rerun_reason = why,
        }, new JsonSerializerOptions { WriteIndented = true }));
        var clock = Stopwatch.StartNew();
        var context = new StageContext(stage.Name, dir, parents, stage.Data.Select(d => d.Corpus).ToArray(), seed, device, Options.Log);
        var metrics = kind.Execute(context, stage.Config);
        if (!Models.Checkpoint.Exists(context.FinalCheckpoint))
            throw new InvalidOperationException($"stage '{stage.Name}' ({stage.Kind}) finished without writing {context.FinalCheckpoint}");
        // done.json first, then the resumable checkpoint: a kill in between leaves a finished node, never one to retrain from 0.
        AtomicFile.WriteAllText(done, JsonSerializer.Serialize(metrics.OrderBy(m => m.Key, StringComparer.Ordinal).ToDictionary()));
        Trainer.RemoveCheckpoints(dir);
        return ("done", metrics, clock.Elapsed.TotalSeconds);
    }

    static bool IsDone(string dir) => File.Exists(Path.Combine(dir, DoneFile)) && Models.Checkpoint.Exists(Path.Combine(dir, Trainer.FinalDir));

    /// <summary>done.json or an eval/*.json: an object of numbers; anything else is an error naming the file.</summary>
    internal static IReadOnlyDictionary<string, double> ReadDone(string path)
    {
        try { return JsonSerializer.Deserialize<Dictionary<string, double>>(File.ReadAllText(path)) ?? throw new JsonException("null"); }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: expected a JSON object of numbers ({e.Message}); delete it to run the stage again", e);
        }
    }

    /// <summary>Suites after this stage, each cached in the node directory under a hash of the suite's fingerprint.</summary>
    IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>> Evaluate(Experiment e, Stage stage, string key, string dir, TorchSharp.torch.Device device, string? parentCheckpoint)
    {
        var result = new Dictionary<string, IReadOnlyDictionary<string, double>>();
        if (e.EvaluateAfter is not null && !e.EvaluateAfter.Contains(stage.Name)) return result;
        (CausalLM Model, Data.ITokenizer Tokenizer)? loaded = null;
        try
        {
            foreach (var suite in e.Suites)
            {
                var hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(suite.Fingerprint)))[..16].ToLowerInvariant();
                var file = Path.Combine(dir, "eval", $"{suite.Name}-{hash}.json");
                if (File.Exists(file)) { result[suite.Name] = ReadDone(file); continue; }
                loaded ??= Models.Checkpoint.Load(Path.Combine(dir, Trainer.FinalDir), device);
                var scores = suite is IReferenceSuite rs   // e.g. an implicit reward against the checkpoint this stage started from
                    ? rs.Evaluate(loaded.Value.Model, loaded.Value.Tokenizer, parentCheckpoint)
                    : suite.Evaluate(loaded.Value.Model, loaded.Value.Tokenizer);
                AtomicFile.WriteAllText(file, JsonSerializer.Serialize(scores.OrderBy(m => m.Key, StringComparer.Ordinal).ToDictionary()));
                result[suite.Name] = scores;
            }
        }
        finally
        {
            loaded?.Model.Dispose();
        }
        return result;
    }

    static IEnumerable<MetricRecord> ReadMetrics(string key, string file) =>
        MetricsLog.Read(file).SelectMany(o =>
        {
            var step = o["step"]!.GetValue<long>();
            var kind = o["kind"]?.GetValue<string>() ?? "train";
            return o.Where(kv => !MetricsLog.TimeFields.Contains(kv.Key) && kv.Key is not ("step" or "kind") && kv.Value is not null
                                 && kv.Value.GetValueKind() == JsonValueKind.Number)
                .Select(kv => new MetricRecord(key, step, kind, kv.Key, kv.Value!.GetValue<double>()));
        });

    static string Now() => DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);
}
