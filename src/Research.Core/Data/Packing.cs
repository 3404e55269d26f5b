using System.Text;

namespace Research.Data;

/// <summary>
/// A corpus tokenized and concatenated (each document's tokens followed by EOS), cut into training blocks.
/// Block i is <c>Tokens[i·BlockLength .. i·BlockLength + BlockLength]</c> inclusive: BlockLength + 1 tokens,
/// input = the first BlockLength, target = the last BlockLength; the last token of block i is the first of block i + 1.
/// </summary>
/// <param name="Name">The corpus name, for messages.</param>
/// <param name="Tokens">The whole concatenation.</param>
/// <param name="BlockLength">Tokens of input per block (the model's context length).</param>
/// <param name="Bytes">UTF-8 bytes of the packed texts (for bits per byte).</param>
/// <param name="Documents">Documents packed.</param>
/// <param name="TokenizerName">The tokenizer that produced <paramref name="Tokens"/>.</param>
public sealed record TokenBlocks(string Name, int[] Tokens, int BlockLength, long Bytes, int Documents, string TokenizerName)
{
    /// <summary>Number of whole blocks: floor((TotalTokens − 1) / BlockLength). Trailing tokens that do not fill a block are not used.</summary>
    public int Count => Tokens.Length <= BlockLength ? 0 : (Tokens.Length - 1) / BlockLength;

    public int TotalTokens => Tokens.Length;

    /// <summary>Tokens of block <paramref name="i"/>: BlockLength + 1 of them.</summary>
    public ReadOnlySpan<int> Block(int i)
    {
        if ((uint)i >= (uint)Count)
            throw new ArgumentOutOfRangeException(nameof(i), i, $"{Name} has {Count} blocks of {BlockLength}");
        return Tokens.AsSpan(i * BlockLength, BlockLength + 1);
    }

    public override string ToString() =>
        $"{Name}: {Documents} documents, {TotalTokens} tokens ({TokenizerName}), {Count} blocks of {BlockLength}";
}

public static class Packing
{
    /// <summary>Packs a corpus; the error for too little text names it.</summary>
    public static TokenBlocks Pack(Corpus corpus, ITokenizer tokenizer, int blockLength)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        return Pack(corpus.Documents, tokenizer, blockLength, corpus.Name);
    }

    /// <summary>
    /// Tokenizes each document, appends EOS after each, concatenates. Throws <see cref="CorpusException"/>
    /// when there are fewer than BlockLength + 1 tokens (not even one block).
    /// </summary>
    /// <param name="name">Names the corpus in messages; defaults to the first document's source.</param>
    public static TokenBlocks Pack(IReadOnlyList<Document> documents, ITokenizer tokenizer, int blockLength, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(documents);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockLength);
        name ??= documents.Count > 0 ? documents[0].Source : "(no documents)";

        var tokens = new List<int>();
        long bytes = 0;
        foreach (var doc in documents)
        {
            tokens.AddRange(tokenizer.Encode(doc.Text));
            tokens.Add(tokenizer.EosId);
            bytes += Encoding.UTF8.GetByteCount(doc.Text);
        }
        if (tokens.Count < blockLength + 1)
            throw new CorpusException(
                $"{name}: too little text for one block of length {blockLength}: {documents.Count} document(s) give {tokens.Count} tokens with the {tokenizer.Name} tokenizer, and a block needs {blockLength + 1}; add text or use a shorter block length");
        return new TokenBlocks(name, tokens.ToArray(), blockLength, bytes, documents.Count, tokenizer.Name);
    }
}
