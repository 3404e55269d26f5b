using Research.Data;
using Research.Eval;
using Research.Models;

namespace Research.Pipelines;

/// <summary>
/// Multiple-choice accuracy as lm-evaluation-harness scores it: {"acc", "acc_norm", "count"}.
/// Questions come from a JSONL file (<see cref="McData"/>) or from items in memory; k few-shot examples per
/// question are drawn by seed from <c>fewShot</c> items (null: the questions themselves, never the question
/// being scored). The fingerprint covers the content of the questions and of the few-shot source, k, the seed
/// and the template; not the batch size, which does not change the scores.
/// </summary>
public sealed class McSuite : ISuite
{
    readonly Func<IReadOnlyList<McItem>> _items;
    readonly Func<IReadOnlyList<McItem>>? _fewShot;
    readonly string _itemsHash;
    readonly string _fewShotHash;
    readonly McOptions _options;

    public McSuite(string name, string path, int fewShot = 0, string? fewShotPath = null, long seed = 1234, int batchSize = 8, string template = McPrompt.DefaultTemplate)
    {
        if (!File.Exists(path)) throw new CorpusException($"{path}: multiple-choice data not found (expected a .jsonl file of question/choices/answer objects)");
        if (fewShotPath is not null && !File.Exists(fewShotPath))
            throw new CorpusException($"{fewShotPath}: few-shot data not found (expected a .jsonl file of question/choices/answer objects)");
        Name = name;
        _items = () => McData.Read(path);
        _fewShot = fewShotPath is null ? null : () => McData.Read(fewShotPath);
        _itemsHash = McData.ContentHash(path);
        _fewShotHash = fewShotPath is null ? "self" : McData.ContentHash(fewShotPath);
        _options = Options(fewShot, seed, batchSize, template);
    }

    public McSuite(string name, IReadOnlyList<McItem> items, int fewShot = 0, IReadOnlyList<McItem>? fewShotItems = null, long seed = 1234, int batchSize = 8, string template = McPrompt.DefaultTemplate)
    {
        if (items.Count == 0) throw new ArgumentException($"multiple-choice suite '{name}': no items");
        Name = name;
        _items = () => items;
        _fewShot = fewShotItems is null ? null : () => fewShotItems;
        _itemsHash = McData.ContentHash(items);
        _fewShotHash = fewShotItems is null ? "self" : McData.ContentHash(fewShotItems);
        _options = Options(fewShot, seed, batchSize, template);
    }

    static McOptions Options(int fewShot, long seed, int batchSize, string template)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fewShot);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return new McOptions { FewShot = fewShot, Seed = seed, BatchSize = batchSize, Template = template };
    }

    public string Name { get; }

    public string Fingerprint =>
        $"mc|{_itemsHash}|k={_options.FewShot}|fewshot={_fewShotHash}|seed={_options.Seed}|template={_options.Template.Replace("\n", "\\n")}";

    public IReadOnlyDictionary<string, double> Evaluate(CausalLM model, ITokenizer tokenizer) => Score(model, tokenizer).ToMetrics();

    /// <summary>The full result, with each question's log-likelihoods and decisions.</summary>
    public McResult Score(CausalLM model, ITokenizer tokenizer) =>
        McScoring.Evaluate(model, tokenizer, _items(), _options, _fewShot?.Invoke());
}
