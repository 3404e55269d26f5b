using Research.Data;
using Research.Models;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>What a stage gets when the executor runs it: where to write, what it starts from, the data.</summary>
/// <param name="Directory">The node's own directory; the stage leaves its checkpoint in <c>final/</c>.</param>
/// <param name="Parents">Checkpoint directories of the parent stages, in order.</param>
/// <param name="Data">The corpora the stage was declared with, in order.</param>
/// <param name="Seed">The experiment's seed: weights init, data order.</param>
public sealed record StageContext(
    string Name,
    string Directory,
    IReadOnlyList<string> Parents,
    IReadOnlyList<Corpus> Data,
    long Seed,
    Device Device,
    TextWriter Log)
{
    public string FinalCheckpoint => Path.Combine(Directory, Trainer.FinalDir);

    public Corpus DataAt(int i, string what) =>
        i < Data.Count ? Data[i] : throw new ArgumentException($"stage '{Name}': needs {what} (data input {i + 1})");

    public string ParentAt(int i) =>
        i < Parents.Count ? Parents[i] : throw new ArgumentException($"stage '{Name}': needs a parent stage to start from");
}

/// <summary>How a kind of stage runs: reads parents and data, trains or transforms, writes final/; returns its last metrics.</summary>
public interface IStageExecutor
{
    /// <summary>The kind's name: in stage keys, node directories and the run store.</summary>
    string Kind { get; }
    /// <summary>The options record this kind runs: the executor of a stage is found from its options' type.</summary>
    Type Options { get; }
    IReadOnlyDictionary<string, double> Execute(StageContext context, object config);
}

/// <summary>
/// A config that reads files by path (e.g. tune's JSONL): the content hash it returns enters the stage's
/// key, so an edited file re-runs the stage even though the path in the config is unchanged.
/// </summary>
public interface IReadsFiles
{
    string FilesFingerprint();
}

/// <summary>Validation that every LM-like stage shares: perplexity and bits per byte on held-out documents.</summary>
public static class LmValidation
{
    public static Func<CausalLM, IReadOnlyDictionary<string, double>> On(ITokenizer tokenizer, int maxLength, params (string Name, Corpus Corpus)[] sets) =>
        model => sets.Where(s => s.Corpus.Documents.Count > 0)
            .SelectMany(s => Eval.Perplexity.Evaluate(model, tokenizer, s.Corpus.Documents, s.Name, maxLength).ToMetrics($"val_{s.Name}_"))
            .ToDictionary();
}
