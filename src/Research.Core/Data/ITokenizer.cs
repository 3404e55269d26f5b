namespace Research.Data;

/// <summary>One interface for every tokenizer: ids in [0, VocabSize).</summary>
public interface ITokenizer
{
    /// <summary>Short name saved in checkpoints ("byte", "gpt2").</summary>
    string Name { get; }
    int VocabSize { get; }
    int BosId { get; }
    int EosId { get; }
    int PadId { get; }
    /// <summary>Token ids of the text, without bos/eos.</summary>
    int[] Encode(string text);
    string Decode(IEnumerable<int> ids);
    /// <summary>Writes the tokenizer's own files into a checkpoint directory (tokenizer.json and tokenizer_config.json).</summary>
    void Save(string directory);
}
