namespace Research.Data;

/// <summary>A tokenizer could not be found, read or understood; the message names the file.</summary>
public sealed class TokenizerException : IOException
{
    public TokenizerException(string message) : base(message) { }
    public TokenizerException(string message, Exception inner) : base(message, inner) { }
}
