using System.Text.Json;
using System.Text.Json.Serialization;
using Research.Data;
using Research.Models;
using Research.Runs;
using static TorchSharp.torch;

namespace Research.Training;

/// <summary>Where the loop stands: enough, with weights and optimizer moments, to resume exactly.</summary>
public sealed record TrainerState
{
    [JsonPropertyName("format")] public int Format { get; init; } = 1;
    /// <summary>Optimizer steps completed; also the data position (batches are a pure function of the step).</summary>
    [JsonPropertyName("step")] public long Step { get; init; }
    [JsonPropertyName("tokens_seen")] public long TokensSeen { get; init; }
    [JsonPropertyName("optimizer_steps")] public long OptimizerSteps { get; init; }
    /// <summary>Torch's CPU generator state, base64.</summary>
    [JsonPropertyName("rng_state")] public string RngState { get; init; } = "";
    /// <summary>The TrainConfig and objective this checkpoint belongs to (resume refuses another).</summary>
    [JsonPropertyName("identity")] public string Identity { get; init; } = "";
}

/// <summary>Resumable training checkpoints: a model checkpoint plus optimizer.safetensors and trainer_state.json.</summary>
public static class TrainCheckpoint
{
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "trainer_state.json";
    /// <summary>The state of an <see cref="IStatefulObjective"/>, when the objective has one.</summary>
    public const string ObjectiveFile = "objective.safetensors";
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static void Save(string dir, CausalLM model, ITokenizer tokenizer, AdamW optimizer, TrainerState state, LoraAdapter? adapter = null,
        IStatefulObjective? objective = null) =>
        Checkpoint.Save(dir, model, tokenizer, tmp =>
        {
            adapter?.SaveInto(tmp, baseModel: "");
            if (objective is not null) Safetensors.Save(Path.Combine(tmp, ObjectiveFile), objective.StateTensors());
            Safetensors.Save(Path.Combine(tmp, OptimizerFile), optimizer.StateTensors());
            var rng = TorchSharp.torch.random.get_rng_state();
            var withRng = state with { RngState = Convert.ToBase64String(rng.bytes.ToArray()), OptimizerSteps = optimizer.StepCount };
            rng.Dispose();
            AtomicFile.WriteAllText(Path.Combine(tmp, StateFile), JsonSerializer.Serialize(withRng, Json));
        });

    /// <summary>trainer_state.json; a corrupt one (truncated, not an object, wrong types) is an error naming the file.</summary>
    static TrainerState ReadState(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path)) ?? throw new InvalidDataException($"{path}: empty trainer state");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: corrupt trainer state ({e.Message}); delete the checkpoint directory to train from the start", e);
        }
    }

    public static bool Exists(string dir) => File.Exists(Path.Combine(dir, StateFile)) && Checkpoint.Exists(dir);

    /// <summary>Restores weights, optimizer moments and the RNG; returns the state to continue from.</summary>
    public static TrainerState Restore(string dir, CausalLM model, AdamW optimizer, string identity, LoraAdapter? adapter = null,
        IStatefulObjective? objective = null)
    {
        var statePath = Path.Combine(dir, StateFile);
        var state = ReadState(statePath);
        if (state.Identity != identity)
            throw new InvalidOperationException(
                $"{dir}: this checkpoint was written by a run with another configuration; " +
                "delete the directory to start afresh, or run with the configuration it was made with");
        Checkpoint.LoadWeights(model, dir);
        adapter?.LoadWeights(dir);
        var opt = Safetensors.Load(Path.Combine(dir, OptimizerFile));
        try { optimizer.LoadState(opt, state.OptimizerSteps, Path.Combine(dir, OptimizerFile)); }
        finally { foreach (var t in opt.Values) t.Dispose(); }
        if (objective is not null)
        {
            var path = Path.Combine(dir, ObjectiveFile);
            if (!File.Exists(path)) throw new InvalidDataException($"{dir}: the objective keeps state but the checkpoint has no {ObjectiveFile}");
            var st = Safetensors.Load(path);
            try { objective.LoadState(st, path); }
            finally { foreach (var t in st.Values) t.Dispose(); }
        }
        if (state.RngState.Length > 0)
        {
            var rng = TorchSharp.torch.random.get_rng_state();
            rng.bytes = Convert.FromBase64String(state.RngState);
            TorchSharp.torch.random.set_rng_state(rng);
            rng.Dispose();
        }
        return state;
    }
}
