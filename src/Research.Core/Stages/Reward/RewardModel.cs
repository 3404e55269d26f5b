using System.Security.Cryptography;
using Research.Data;
using Research.Models;
using Research.Stages.Online;
using Research.Stages.Uda;
using static TorchSharp.torch;

namespace Research.Stages.Reward;

/// <summary>
/// A trained reward model as a value: a decoder with a one-label <c>score</c> head (Hugging Face's sequence-classification
/// layout), read as an <see cref="IReward"/> that scores prompt + completion by the head at the last non-pad token, tokenized
/// as the reward stage tokenizes its pairs. Its <see cref="Version"/> is a digest of the checkpoint's weights, so a stage keyed
/// by the reward's fingerprint re-runs when the model is retrained; register it (<see cref="Rewards.Register"/>) to name it in
/// grpo or online_dpo, alone or in a weighted sum with verifiable rewards.
/// </summary>
public sealed class RewardModel : IReward, IDisposable
{
    /// <summary>The head's one label, as transformers names the single output of num_labels 1.</summary>
    public static readonly IReadOnlyList<string> Labels = ["LABEL_0"];
    readonly CausalLM _model;
    readonly ITokenizer _tokenizer;
    readonly int _maxLength, _maxPromptLength;
    readonly Lock _gate = new();

    RewardModel(string name, int version, CausalLM model, ITokenizer tokenizer, int maxLength, int maxPromptLength) =>
        (Name, Version, _model, _tokenizer, _maxLength, _maxPromptLength) = (name, version, model, tokenizer, maxLength, maxPromptLength);

    public string Name { get; }
    public int Version { get; }

    /// <summary>Loads <paramref name="dir"/> (a reward stage's final/, or any HF checkpoint with num_labels 1) on <paramref name="device"/> (CPU by default).</summary>
    public static RewardModel Load(string name, string dir, Device? device = null, int maxLength = 256, int maxPromptLength = 128)
    {
        var config = ModelConfig.Load(Path.Combine(dir, Checkpoint.ConfigFile));
        if (config.NumLabels != 1)
            throw new InvalidDataException($"{dir}: a reward model has a score head with num_labels 1 (config.json has {(config.NumLabels is { } n ? $"num_labels {n}" : "no num_labels")}); train one with a reward stage");
        var (model, tokenizer) = Checkpoint.Load(dir, device);
        model.eval();
        foreach (var p in model.parameters()) p.requires_grad = false;
        return new RewardModel(name, WeightsVersion(dir), model, tokenizer, Math.Min(maxLength, model.Config.MaxPositionEmbeddings), maxPromptLength);
    }

    /// <summary>A positive int from the SHA-256 of the checkpoint's weight files: what the reward's version says of its weights.</summary>
    public static int WeightsVersion(string dir)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in Directory.GetFiles(dir, "*.safetensors").Order(StringComparer.Ordinal))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetFileName(f)));
            sha.AppendData(File.ReadAllBytes(f));
        }
        return (int)(BitConverter.ToUInt32(sha.GetHashAndReset(), 0) & 0x7fffffff);
    }

    public double Score(string prompt, string completion, string? answer)
    {
        lock (_gate)
            return Scores(_model, [RewardData.Row(_tokenizer, prompt, completion, _maxLength, _maxPromptLength)], _model.Config.PadTokenId ?? _tokenizer.PadId, 1)[0];
    }

    /// <summary>The head's reward of each row (prompt + completion ids), <paramref name="batch"/> rows per forward, without gradients.</summary>
    public static double[] Scores(CausalLM model, IReadOnlyList<int[]> rows, int padId, int batch)
    {
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            var device = model.EmbeddingWeight.device;
            var result = new double[rows.Count];
            for (var i = 0; i < rows.Count; i += batch)
            {
                using var scope = NewDisposeScope();
                var chunk = rows.Skip(i).Take(batch).ToArray();
                var ids = ClassifyBatch.Collate(chunk, padId, device);
                var r = SequenceClassification.Logits(model, SequenceClassification.Features(model, ids)).to(float32).squeeze(-1).cpu();
                var values = r.data<float>().ToArray();
                for (var j = 0; j < chunk.Length; j++) result[i + j] = values[j];
            }
            return result;
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    public void Dispose() => _model.Dispose();
}
