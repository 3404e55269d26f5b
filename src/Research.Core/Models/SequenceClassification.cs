using System.Globalization;
using Research.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Research.Models;

/// <summary>
/// Sequence classification on any decoder, laid out as Hugging Face's *ForSequenceClassification: a linear head
/// <c>score.weight</c> [num_labels, hidden] without bias over the final hidden state (after the final norm) of the last
/// token that is not padding; config.json carries num_labels, id2label and label2id. The same head with num_labels 1 is a
/// reward model's scalar. The model keeps its language-model head, so a classifier can still be adapted on text.
/// </summary>
public static class SequenceClassification
{
    public const string HeadName = "score";
    public const string WeightName = HeadName + ".weight";

    /// <summary>
    /// Per row, the position whose hidden state is pooled, by Hugging Face's rule: the rightmost token that is not
    /// <paramref name="padId"/> (position 0 when a row is all padding); with no pad id, the last position.
    /// </summary>
    /// <param name="inputIds">(B, T) int64.</param>
    /// <returns>(B) int64.</returns>
    public static Tensor LastNonPad(Tensor inputIds, int? padId)
    {
        var t = inputIds.shape[1];
        if (padId is not { } pad) return full(inputIds.shape[0], t - 1, dtype: int64, device: inputIds.device);
        using var scope = NewDisposeScope();
        var keep = inputIds.ne(pad).to(int64);                                                      // (B, T)
        var positions = arange(t, dtype: int64, device: inputIds.device);                           // (T)
        return (positions * keep).argmax(-1).MoveToOuterDisposeScope();                              // (B)
    }

    /// <summary>Rows of <paramref name="hidden"/> (B, T, C) at <paramref name="index"/> (B): (B, C).</summary>
    public static Tensor Pool(Tensor hidden, Tensor index)
    {
        using var scope = NewDisposeScope();
        var c = hidden.shape[2];
        var at = index.view(-1, 1, 1).expand(-1, 1, c);                                            // (B, 1, C)
        return hidden.gather(1, at).squeeze(1).MoveToOuterDisposeScope();                            // (B, C)
    }

    /// <summary>The pooled features (B, C) of right-padded ids (B, T): what the head reads and what feature alignment aligns.</summary>
    public static Tensor Features(CausalLM model, Tensor inputIds)
    {
        using var scope = NewDisposeScope();
        var hidden = model.Hidden(inputIds);                                                         // (B, T, C)
        return Pool(hidden, LastNonPad(inputIds, model.Config.PadTokenId)).MoveToOuterDisposeScope();
    }

    /// <summary>Class logits (B, num_labels) of pooled features (B, C).</summary>
    public static Tensor Logits(CausalLM model, Tensor features) =>
        (model.ScoreHead ?? throw new InvalidOperationException(
            "this model has no sequence-classification head (config.json has no num_labels); run a classify stage first")).forward(features);

    /// <summary>The class names of a model's head, in index order.</summary>
    public static IReadOnlyList<string> Labels(ModelConfig config)
    {
        var n = config.NumLabels ?? throw new InvalidOperationException("this model has no sequence-classification head (config.json has no num_labels)");
        return Enumerable.Range(0, n).Select(i => config.Id2Label?.GetValueOrDefault(i.ToString(CultureInfo.InvariantCulture)) ?? $"LABEL_{i}").ToArray();
    }

    /// <summary>The config with a head over <paramref name="labels"/> (index order), as Hugging Face writes it.</summary>
    public static ModelConfig WithHead(ModelConfig config, IReadOnlyList<string> labels)
    {
        if (labels.Count == 0) throw new ArgumentException("a classification head needs at least one label");
        if (labels.Distinct(StringComparer.Ordinal).Count() != labels.Count) throw new ArgumentException($"labels repeat: {string.Join(", ", labels)}");
        return config with
        {
            NumLabels = labels.Count,
            Id2Label = labels.Select((l, i) => (i, l)).ToDictionary(x => x.i.ToString(CultureInfo.InvariantCulture), x => x.l),
            Label2Id = labels.Select((l, i) => (i, l)).ToDictionary(x => x.l, x => x.i),
        };
    }

    /// <summary>
    /// A checkpoint as a classifier over <paramref name="labels"/>: one that has a head with these labels loads as it is;
    /// a language model gets a new head (normal(0, initializer_range) from <paramref name="seed"/>); a head over other labels
    /// is an error naming the checkpoint.
    /// </summary>
    public static (CausalLM Model, ITokenizer Tokenizer) Load(string dir, IReadOnlyList<string> labels, long seed, Device? device = null)
    {
        var config = ModelConfig.Load(Path.Combine(dir, Checkpoint.ConfigFile));
        if (config.NumLabels is not null)
        {
            var have = Labels(config);
            if (!have.SequenceEqual(labels))
                throw new InvalidDataException($"{dir}: its classification head has labels [{string.Join(", ", have)}], this stage needs [{string.Join(", ", labels)}]");
            return Checkpoint.Load(dir, device);
        }
        var tokenizer = Tokenizers.Load(dir);
        // Batches are right-padded, and the head pools by pad_token_id (as transformers does): a config without one gets the tokenizer's.
        var model = new CausalLM(WithHead(config, labels) with { PadTokenId = config.PadTokenId ?? tokenizer.PadId }, seed);
        try
        {
            Checkpoint.LoadWeights(model, dir, new HashSet<string> { WeightName });
            if (device is not null) model.to(device);
            return (model, tokenizer);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
