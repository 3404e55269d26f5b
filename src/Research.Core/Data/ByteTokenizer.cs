using System.Text;
using System.Text.Json.Nodes;
using Research.Runs;

namespace Research.Data;

/// <summary>
/// Byte-level tokenizer: the UTF-8 bytes 0..255 of the text are ids 0..255, followed by three
/// specials: 256 = &lt;|bos|&gt;, 257 = &lt;|eos|&gt;, 258 = &lt;|pad|&gt;. <see cref="VocabSize"/> is therefore 259.
/// <see cref="Decode"/> drops the specials and decodes the bytes as UTF-8; invalid sequences become U+FFFD.
/// </summary>
public sealed class ByteTokenizer : ITokenizer
{
    public const int Bos = 256;
    public const int Eos = 257;
    public const int Pad = 258;
    public const int Size = 259;
    public const string BosToken = "<|bos|>";
    public const string EosToken = "<|eos|>";
    public const string PadToken = "<|pad|>";

    /// <summary>Stateless; share it.</summary>
    public static ByteTokenizer Instance { get; } = new();

    public string Name => "byte";
    public int VocabSize => Size;
    public int BosId => Bos;
    public int EosId => Eos;
    public int PadId => Pad;
    public bool AddsBos => true;

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var bytes = Encoding.UTF8.GetBytes(text);
        var ids = new int[bytes.Length];
        for (var i = 0; i < bytes.Length; i++) ids[i] = bytes[i];
        return ids;
    }

    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            if (id is < 0 or >= Size)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"byte tokenizer ids are in [0, {Size})");
            if (id < 256) bytes.Add((byte)id);
        }
        // Encoding.UTF8 replaces invalid sequences with U+FFFD (it does not throw).
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var config = Tokenizers.Config("ResearchByteTokenizer", Name, BosToken, EosToken, PadToken, Size);
        AtomicFile.WriteAllText(Path.Combine(directory, Tokenizers.ConfigFile), config.ToJsonString(Tokenizers.JsonOptions));

        var added = new JsonArray();
        foreach (var (id, tok) in new[] { (Bos, BosToken), (Eos, EosToken), (Pad, PadToken) })
            added.Add(new JsonObject { ["id"] = id, ["content"] = tok, ["special"] = true });
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["research_tokenizer"] = Name,
            ["model"] = new JsonObject
            {
                ["type"] = "Bytes",
                ["description"] = "UTF-8 byte b (0..255) is token id b; specials follow.",
                ["byte_ids"] = new JsonObject { ["first"] = 0, ["last"] = 255 },
                ["vocab_size"] = Size,
            },
            ["added_tokens"] = added,
        };
        AtomicFile.WriteAllText(Path.Combine(directory, Tokenizers.JsonFile), json.ToJsonString(Tokenizers.JsonOptions));
    }
}
