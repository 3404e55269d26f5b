using Research.Data;
using Research.Models;
using Research.Stages.Reward;

namespace Research.Pipelines;

/// <summary>
/// Pair accuracy of a reward model on a preference file (prompt/chosen/rejected, optional margin): pair_accuracy (share of
/// pairs with r(chosen) &gt; r(rejected)), reward_margin (mean r_c − r_r) and count, every pair scored (no split). A model without
/// a one-label head (the language models a pipeline passes through) gets an empty result, so the suite can follow every stage.
/// </summary>
public sealed class RewardSuite(string name, string path, int maxLength = 256, int maxPromptLength = 128, int batchSize = 32) : ISuite
{
    readonly string _hash = File.Exists(path) ? SftData.FileFingerprint(path)
        : throw new CorpusException($"{path}: preference data not found (expected a .jsonl file of {{\"prompt\", \"chosen\", \"rejected\"}} objects)");

    public string Name => name;
    public string Fingerprint => $"reward|{_hash}|max={maxLength},{maxPromptLength}";

    public IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer)
    {
        if (model.Config.NumLabels != 1) return new Dictionary<string, double>();
        var pairs = RewardData.Prepare(path, tokenizer, Math.Min(maxLength, model.Config.MaxPositionEmbeddings), maxPromptLength, 0.0, 0).Train;
        var pad = model.Config.PadTokenId ?? tokenizer.PadId;
        var chosen = RewardModel.Scores(model, pairs.Select(p => p.Chosen).ToArray(), pad, batchSize);
        var rejected = RewardModel.Scores(model, pairs.Select(p => p.Rejected).ToArray(), pad, batchSize);
        return new Dictionary<string, double>
        {
            ["pair_accuracy"] = RewardLosses.Accuracy(chosen, rejected),
            ["reward_margin"] = chosen.Select((c, i) => c - rejected[i]).Average(),
            ["count"] = pairs.Count,
        };
    }
}
