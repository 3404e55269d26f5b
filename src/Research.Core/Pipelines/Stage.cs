using System.Text.Json;
using System.Text.Json.Serialization;
using Research.Backend;
using Research.Stages;
using Research.Training;

namespace Research.Pipelines;

/// <summary>
/// A stage as a value: a name, its typed options (which say its kind), the stages it starts from and the data it reads.
/// Running it maps parent checkpoints to a checkpoint; nothing runs until an executor asks.
/// </summary>
public sealed record Stage(string Name, IStageOptions Config, IReadOnlyList<Stage> Parents, IReadOnlyList<DataSource> Data)
{
    /// <summary>The kind of stage, from its options (<see cref="IStageOptions.Kind"/>).</summary>
    public string Kind => Config.Kind;

    static readonly JsonSerializerOptions Canonical = new()
    {
        WriteIndented = false,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>The config as canonical JSON (what the key hashes, and what the run store records).</summary>
    public string ConfigJson => JsonSerializer.Serialize(Config, Config.GetType(), Canonical);

    /// <summary>
    /// The stage as it trains on a device with this bf16 support: a stage that asks for bf16 where there is none (and does not
    /// force it) trains in float32, so its key, node.json and the run store say float32 (<see cref="PrecisionPolicy.Effective"/>);
    /// otherwise this stage itself.
    /// </summary>
    public Stage On(Bf16Support bf16) =>
        Config is ITrainedOptions t && PrecisionPolicy.Effective(t.Train, bf16) is var e && !ReferenceEquals(e, t.Train)
            ? this with { Config = t.WithTrain(e) }
            : this;

    /// <summary>A copy with another config of the same type (sweeps use this).</summary>
    public Stage WithConfig(IStageOptions config) =>
        config.GetType() == Config.GetType() ? this with { Config = config }
        : throw new ArgumentException($"stage '{Name}': config must stay a {Config.GetType().Name}, got {config.GetType().Name}");

    public Stage Named(string name) => this with { Name = name };

    /// <summary>Every stage this one depends on, parents before children, each once.</summary>
    public IReadOnlyList<Stage> Closure()
    {
        var order = new List<Stage>();
        var seen = new HashSet<Stage>(ReferenceEqualityComparer.Instance);
        void Visit(Stage s)
        {
            if (!seen.Add(s)) return;
            foreach (var p in s.Parents) Visit(p);
            order.Add(s);
        }
        Visit(this);
        return order;
    }

    public override string ToString() => $"{Kind}:{Name}";
}
