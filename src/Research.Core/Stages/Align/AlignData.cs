using System.Security.Cryptography;
using Research.Data;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>One scored row: <see cref="Tokens"/> = prompt + completion; targets before <see cref="PromptLength"/> are not scored.</summary>
public sealed record AlignRow(int[] Tokens, int PromptLength)
{
    public int CompletionLength => Tokens.Length - PromptLength;
}

/// <summary>
/// An example as two rows: paired = (prompt + chosen, prompt + rejected); unpaired = (prompt + completion, KTO's mismatched
/// row: this prompt + the NEXT example's completion). Ref* are the parent model's summed log-probs of the rows (NaN until set).
/// </summary>
public sealed record AlignItem(AlignRow First, AlignRow Second, double Label, bool Paired, string Prompt)
{
    public double RefFirst { get; init; } = double.NaN;
    public double RefSecond { get; init; } = double.NaN;
}

/// <summary>Training and held-out items (held-out pairs stay pairs whatever the mode) and what reading the data counted.</summary>
public sealed record AlignData(IReadOnlyList<AlignItem> Train, IReadOnlyList<AlignItem> Validation, PreferenceFile File, int PromptsTruncated, int CompletionsTruncated)
{
    public IEnumerable<AlignItem> All => Train.Concat(Validation);

    /// <summary>Digest of every row's tokens, prompt length and label: the data half of the reference-cache key.</summary>
    public string Fingerprint()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var it in All)
            foreach (var r in new[] { it.First, it.Second })
            {
                sha.AppendData(BitConverter.GetBytes(r.Tokens.Length));
                sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(r.Tokens.AsSpan()));
                sha.AppendData(BitConverter.GetBytes(r.PromptLength));
                sha.AppendData(BitConverter.GetBytes(it.Label));
            }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    public AlignData WithReference(float[] first, float[] second)
    {
        int i = 0;
        AlignItem Set(AlignItem it) { var r = it with { RefFirst = first[i], RefSecond = second[i] }; i++; return r; }
        var train = Train.Select(Set).ToArray();
        var val = Validation.Select(Set).ToArray();
        return this with { Train = train, Validation = val };
    }
}

/// <summary>
/// Rows of B examples in ONE forward: Input, Target (R, T) int64 with R = 2B (first rows, then second rows) or B (point-wise);
/// targets -100 except at completion tokens and padding. Reference (R) float32, Labels (B) float32. Normalizer = B.
/// </summary>
public sealed record PreferenceBatch(Tensor Input, Tensor Target, Tensor Reference, Tensor Labels, long Normalizer, long Tokens) : IBatch
{
    public static PreferenceBatch From(IReadOnlyList<AlignItem> items, bool bothRows, int pad, Device device)
    {
        var rows = items.Select(i => i.First).Concat(bothRows ? items.Select(i => i.Second) : []).ToArray();
        var refs = items.Select(i => (float)i.RefFirst).Concat(bothRows ? items.Select(i => (float)i.RefSecond) : []).ToArray();
        var (input, target) = Rows(rows, pad, device);
        return new PreferenceBatch(input, target, tensor(refs, device: device),
            tensor(items.Select(i => (float)i.Label).ToArray(), device: device), items.Count, input.numel());
    }

    /// <summary>Right-padded inputs (R, T) and targets (R, T): target j = token j+1 when j+1 is a completion token, else -100.</summary>
    public static (Tensor Input, Tensor Target) Rows(IReadOnlyList<AlignRow> rows, int pad, Device device)
    {
        var t = rows.Max(r => r.Tokens.Length) - 1;
        var input = new long[rows.Count * t];
        var target = new long[rows.Count * t];
        Array.Fill(input, pad);
        Array.Fill(target, TokenLoss.IgnoreIndex);
        for (int i = 0; i < rows.Count; i++)
        {
            var tok = rows[i].Tokens;
            for (int j = 0; j < tok.Length - 1; j++)
            {
                input[i * t + j] = tok[j];
                if (j + 1 >= rows[i].PromptLength) target[i * t + j] = tok[j + 1];
            }
        }
        return (tensor(input, dtype: int64, device: device).view(rows.Count, t), tensor(target, dtype: int64, device: device).view(rows.Count, t));
    }

    public void Dispose()
    {
        Input.Dispose();
        Target.Dispose();
        Reference.Dispose();
        Labels.Dispose();
    }
}
