namespace Research.Training;

/// <summary>
/// When the training losses compute the head chunk by chunk (<see cref="ChunkedLoss"/>) instead of from full logits.
/// The setting is <see cref="TrainConfig.LossChunkRows"/>: null = automatic (chunks of <see cref="DefaultRows"/> rows for
/// vocabularies of at least <see cref="MinVocab"/>, the plain path below, so the tiny byte models keep their exact
/// losses), 0 = never, N = chunks of N rows whatever the vocabulary. The trainer puts its config's setting in force for
/// the run (<see cref="Use"/>); outside a run (evaluation, tests) the automatic rule applies.
/// </summary>
public static class LossChunking
{
    /// <summary>The smallest vocabulary chunked automatically.</summary>
    public const long MinVocab = 32_768;
    /// <summary>Rows per chunk when automatic: (512, 151,936) fp32 logits are 311 MB.</summary>
    public const int DefaultRows = 512;

    static readonly AsyncLocal<int?> Setting = new();

    /// <summary>Rows per chunk for a head of <paramref name="vocab"/> outputs, 0 = the plain full-logits path.</summary>
    public static int RowsFor(long vocab) => Setting.Value switch
    {
        null => vocab >= MinVocab ? DefaultRows : 0,
        var rows => rows.Value,
    };

    /// <summary>Puts <paramref name="rows"/> (null = automatic, 0 = off, N = rows per chunk) in force until disposed.</summary>
    public static IDisposable Use(int? rows)
    {
        if (rows < 0) throw new ArgumentException($"loss chunk rows must be >= 0 (got {rows}); 0 = off, null = automatic");
        var previous = Setting.Value;
        Setting.Value = rows;
        return new Restore(previous);
    }

    sealed class Restore(int? previous) : IDisposable
    {
        public void Dispose() => Setting.Value = previous;
    }
}
