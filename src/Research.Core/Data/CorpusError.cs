namespace Research.Data;

/// <summary>
/// A corpus could not be read or used. The message starts with the file (and line, when there is one),
/// e.g. <c>data/x.jsonl:7: malformed JSON (...)</c>, and says what to do where that is not obvious.
/// </summary>
public sealed class CorpusException : Exception
{
    public CorpusException(string message) : base(message) { }
    public CorpusException(string message, Exception inner) : base(message, inner) { }
}
