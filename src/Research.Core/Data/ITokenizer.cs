namespace Research.Data;

/// <summary>One interface for every tokenizer: ids in [0, VocabSize).</summary>
public interface ITokenizer
{
    /// <summary>Short name saved in checkpoints ("byte", "gpt2", "hf").</summary>
    string Name { get; }
    int VocabSize { get; }
    /// <summary>Always a valid id; see <see cref="AddsBos"/> for whether the tokenizer's own convention starts texts with it.</summary>
    int BosId { get; }
    int EosId { get; }
    int PadId { get; }
    /// <summary>
    /// Whether sequences conventionally start with <see cref="BosId"/> (byte, gpt2, Llama: true; Qwen, which has no bos
    /// token and whose BosId is its &lt;|endoftext|&gt; separator: false).
    /// </summary>
    bool AddsBos { get; }
    /// <summary>Token ids of the text, without bos/eos.</summary>
    int[] Encode(string text);
    string Decode(IEnumerable<int> ids);
    /// <summary>Writes the tokenizer's own files into a checkpoint directory (tokenizer.json and tokenizer_config.json).</summary>
    void Save(string directory);
}
