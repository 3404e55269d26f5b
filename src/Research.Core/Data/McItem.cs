namespace Research.Data;

/// <summary>
/// One multiple-choice question: <paramref name="Answer"/> indexes the gold choice.
/// <paramref name="Source"/> and <paramref name="Line"/> name where it came from (for errors and reports).
/// </summary>
public sealed record McItem(string Question, IReadOnlyList<string> Choices, int Answer, string Source, int Line)
{
    public string Where => $"{Source}:{Line}";

    /// <summary>Same question and same choices (used to keep an item out of its own few-shot examples).</summary>
    public bool SameContent(McItem other) =>
        Question == other.Question && Answer == other.Answer && Choices.SequenceEqual(other.Choices);
}
