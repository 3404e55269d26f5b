using System.Buffers;
using System.Text;
using System.Text.Unicode;

namespace Research.Data;

/// <summary>
/// Reads data files as strict UTF-8. Decoding with replacement would turn a Latin-1 or truncated file into U+FFFD
/// characters that are then trained on and fingerprinted as if they were the data; instead the first invalid byte is a
/// <see cref="CorpusException"/> naming the file, the line and the byte offset in the file. A leading byte-order mark is
/// skipped. Lines end at '\n' (a '\r' before it is dropped), as JSON Lines defines them.
/// </summary>
public static class Utf8Text
{
    static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    static ReadOnlySpan<byte> Bom => [0xEF, 0xBB, 0xBF];

    /// <summary>The whole file as text.</summary>
    public static string ReadAll(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var start = bytes.AsSpan().StartsWith(Bom) ? Bom.Length : 0;
        var span = bytes.AsSpan(start);
        if (FirstInvalid(span) is { } bad)
            throw Invalid(path, 1 + span[..bad].Count((byte)'\n'), start + bad, span[bad]);
        return Strict.GetString(span);
    }

    /// <summary>The file's lines with their 1-based numbers, read as a stream (a large corpus is not held whole).</summary>
    public static IEnumerable<(string Text, int Line)> ReadLines(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var line = new ArrayBufferWriter<byte>(4096);
        var buffer = new byte[1 << 16];
        long offset = 0, lineStart = 0;
        var lineNo = 0;
        var first = true;
        int read;
        while ((read = stream.Read(buffer)) > 0)
        {
            var pos = 0;                                          // positions, not spans: a span cannot live across a yield
            if (first)
            {
                first = false;
                if (buffer.AsSpan(0, read).StartsWith(Bom)) { pos = Bom.Length; offset = lineStart = Bom.Length; }
            }
            while (true)
            {
                var nl = buffer.AsSpan(pos, read - pos).IndexOf((byte)'\n');
                if (nl < 0) { line.Write(buffer.AsSpan(pos, read - pos)); offset += read - pos; break; }
                line.Write(buffer.AsSpan(pos, nl));
                offset += nl + 1;
                pos += nl + 1;
                yield return Decode(path, line, ++lineNo, lineStart);
                line.Clear();
                lineStart = offset;
            }
        }
        if (line.WrittenCount > 0) yield return Decode(path, line, ++lineNo, lineStart);
    }

    static (string, int) Decode(string path, ArrayBufferWriter<byte> line, int lineNo, long lineStart)
    {
        var bytes = line.WrittenSpan;
        if (bytes.EndsWith((ReadOnlySpan<byte>)[(byte)'\r'])) bytes = bytes[..^1];
        if (FirstInvalid(bytes) is { } bad) throw Invalid(path, lineNo, lineStart + bad, bytes[bad]);
        return (Strict.GetString(bytes), lineNo);
    }

    /// <summary>The index of the first byte that does not start a valid UTF-8 sequence, or null.</summary>
    static int? FirstInvalid(ReadOnlySpan<byte> bytes)
    {
        if (Utf8.IsValid(bytes)) return null;
        var chars = ArrayPool<char>.Shared.Rent(Math.Min(bytes.Length, 1 << 16));
        try
        {
            var at = 0;
            while (true)
            {
                var status = Utf8.ToUtf16(bytes[at..], chars, out var read, out _, replaceInvalidSequences: false);
                if (status != OperationStatus.DestinationTooSmall) return at + read;   // InvalidData or NeedMoreData (truncated at the end)
                at += read;
            }
        }
        finally { ArrayPool<char>.Shared.Return(chars); }
    }

    static CorpusException Invalid(string path, int line, long offset, byte value) =>
        new($"{path}:{line}: invalid UTF-8 at byte offset {offset} (byte 0x{value:X2}); the file must be UTF-8: convert it " +
            "(e.g. iconv -f LATIN1 -t UTF-8), or remove the bad bytes");
}
