using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;
using Research.Runs;

namespace Research.Data;

/// <summary>
/// GPT-2 byte-level BPE (Microsoft.ML.Tokenizers with the offline gpt2.tiktoken data package).
/// bos = eos = pad = &lt;|endoftext|&gt; (50256); <see cref="VocabSize"/> is 50257.
/// <see cref="Decode"/> drops &lt;|endoftext|&gt;, like <see cref="ByteTokenizer"/> drops its specials.
/// </summary>
public sealed class Gpt2Tokenizer : ITokenizer
{
    public const int EndOfText = 50256;
    public const int Size = 50257;
    public const string EndOfTextToken = "<|endoftext|>";

    static readonly Lazy<TiktokenTokenizer> Bpe = new(() => TiktokenTokenizer.CreateForModel("gpt2"));

    /// <summary>The BPE tables are loaded once per process on first use; share this instance.</summary>
    public static Gpt2Tokenizer Instance { get; } = new();

    public string Name => "gpt2";
    public int VocabSize => Size;
    public int BosId => EndOfText;
    public int EosId => EndOfText;
    public int PadId => EndOfText;
    public bool AddsBos => true;

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Bpe.Value.EncodeToIds(text).ToArray();
    }

    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var kept = new List<int>();
        foreach (var id in ids)
        {
            if (id is < 0 or >= Size)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"gpt2 token ids are in [0, {Size})");
            if (id != EndOfText) kept.Add(id);
        }
        return Bpe.Value.Decode(kept);
    }

    /// <summary>
    /// Writes tokenizer_config.json (Hugging Face class name GPT2Tokenizer) and a small tokenizer.json
    /// that says which tokenizer this is; the GPT-2 vocabulary itself is not copied (it ships with the library).
    /// </summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var config = Tokenizers.Config("GPT2Tokenizer", Name, EndOfTextToken, EndOfTextToken, EndOfTextToken, Size);
        config["model_max_length"] = 1024;
        AtomicFile.WriteAllText(Path.Combine(directory, Tokenizers.ConfigFile), config.ToJsonString(Tokenizers.JsonOptions));
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["research_tokenizer"] = Name,
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["source"] = "Microsoft.ML.Tokenizers gpt2.tiktoken (standard GPT-2 vocabulary, not copied here)",
                ["vocab_size"] = Size,
            },
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = EndOfText, ["content"] = EndOfTextToken, ["special"] = true }),
        };
        AtomicFile.WriteAllText(Path.Combine(directory, Tokenizers.JsonFile), json.ToJsonString(Tokenizers.JsonOptions));
    }
}
