using Research.Data;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages.Uda;

/// <summary>
/// One step's examples on the device, each set right-padded to its longest row: labelled source rows, optionally their strong
/// view (AdaMatch), and unlabelled target rows with their strong view (self-training, AdaMatch). The normalizer is the number
/// of source rows: every loss is a per-source-example sum.
/// </summary>
public sealed class ClassifyBatch(Tensor source, Tensor labels, Tensor domains, Tensor? sourceStrong, Tensor? target, Tensor? targetStrong, double progress, long tokens) : IBatch
{
    /// <summary>(B, Ts) int64 source ids.</summary>
    public Tensor Source { get; } = source;
    /// <summary>(B) int64 class indices of the source rows.</summary>
    public Tensor Labels { get; } = labels;
    /// <summary>(B) int64 index of each source row's domain among the source domains (M3SDA's sources).</summary>
    public Tensor Domains { get; } = domains;
    public Tensor? SourceStrong { get; } = sourceStrong;
    /// <summary>(B, Tt) int64 target ids (the weak view: the text itself).</summary>
    public Tensor? Target { get; } = target;
    public Tensor? TargetStrong { get; } = targetStrong;
    /// <summary>Training progress step / steps in [0, 1] at this batch (DANN's and AdaMatch's schedules).</summary>
    public double Progress { get; } = progress;
    public long Normalizer => Source.shape[0];
    public long Tokens { get; } = tokens;

    public void Dispose()
    {
        Source.Dispose(); Labels.Dispose(); Domains.Dispose(); SourceStrong?.Dispose(); Target?.Dispose(); TargetStrong?.Dispose();
    }

    /// <summary>BOS (when the tokenizer starts texts with it) and the text's ids, cut to <paramref name="maxLength"/> (the start kept).</summary>
    public static int[] Encode(ITokenizer tokenizer, string text, int maxLength, out bool truncated)
    {
        int[] ids = tokenizer.AddsBos ? [tokenizer.BosId, .. tokenizer.Encode(text)] : tokenizer.Encode(text);
        truncated = ids.Length > maxLength;
        return truncated ? ids[..maxLength] : ids;
    }

    /// <summary>Rows right-padded with <paramref name="padId"/> to the longest: (B, T) int64.</summary>
    public static Tensor Collate(IReadOnlyList<int[]> rows, int padId, Device device)
    {
        var width = rows.Max(r => r.Length);
        var flat = new long[rows.Count * width];
        Array.Fill(flat, padId);
        for (var b = 0; b < rows.Count; b++)
            for (var t = 0; t < rows[b].Length; t++) flat[b * width + t] = rows[b][t];
        return tensor(flat, dtype: int64, device: device).view(rows.Count, width);
    }

    /// <summary>
    /// The strong view of a row for FixMatch-style consistency on text: each token deleted with probability
    /// <paramref name="dropout"/> (token dropout), then one span of round(<paramref name="span"/> · length) tokens replaced by
    /// <paramref name="maskId"/> (span masking). The first token (BOS) and the last token, which the head pools, are never
    /// touched, so the row keeps at least two tokens where it had them.
    /// </summary>
    public static int[] Strong(int[] row, double dropout, double span, int maskId, Rng rng)
    {
        if (row.Length <= 2) return row;
        var kept = new List<int> { row[0] };
        for (var i = 1; i < row.Length - 1; i++)
            if (!(rng.NextDouble() < dropout)) kept.Add(row[i]);
        kept.Add(row[^1]);
        var inner = kept.Count - 2;
        var length = (int)Math.Round(span * inner, MidpointRounding.AwayFromZero);
        if (length > 0 && inner > 0)
        {
            var start = 1 + rng.NextInt(inner - length + 1);
            for (var i = start; i < start + length; i++) kept[i] = maskId;
        }
        return kept.ToArray();
    }
}
