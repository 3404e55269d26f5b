using System.Buffers.Binary;
using System.Text;

namespace Research.Runs;

/// <summary>A provenance manifest in a PNG tEXt chunk (keyword, NUL, Latin-1 text), placed right after IHDR.</summary>
static class ManifestPng
{
    static readonly byte[] Signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    public static byte[] Embed(byte[] png, string keyword, string text)
    {
        Check(png);
        var ihdrEnd = 8 + 12 + (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(8));
        var data = Encoding.Latin1.GetBytes(keyword + "\0" + text);
        var chunk = new byte[12 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(chunk, (uint)data.Length);
        "tEXt"u8.CopyTo(chunk.AsSpan(4));
        data.CopyTo(chunk, 8);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), Crc32(chunk.AsSpan(4, 4 + data.Length)));
        return [.. png.AsSpan(0, ihdrEnd), .. chunk, .. png.AsSpan(ihdrEnd)];
    }

    /// <summary>The text of the first tEXt chunk with this keyword, or null.</summary>
    public static string? Read(byte[] png, string keyword)
    {
        Check(png);
        for (var at = 8; at + 12 <= png.Length;)
        {
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at));
            var type = Encoding.ASCII.GetString(png, at + 4, 4);
            if (length < 0 || at + 12 + length > png.Length) return null;
            if (type == "tEXt")
            {
                var text = Encoding.Latin1.GetString(png, at + 8, length);
                var nul = text.IndexOf('\0');
                if (nul >= 0 && text[..nul] == keyword) return text[(nul + 1)..];
            }
            if (type == "IEND") return null;
            at += 12 + length;
        }
        return null;
    }

    static void Check(byte[] png)
    {
        if (png.Length < 33 || !png.AsSpan(0, 8).SequenceEqual(Signature) || Encoding.ASCII.GetString(png, 12, 4) != "IHDR")
            throw new InvalidDataException("not a PNG image (no signature and IHDR chunk): cannot put the provenance manifest in it");
    }

    static readonly uint[] Table = Enumerable.Range(0, 256).Select(n =>
    {
        var c = (uint)n;
        for (var k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    /// <summary>The CRC-32 PNG chunks end with (over the chunk type and data).</summary>
    internal static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        var c = 0xFFFFFFFFu;
        foreach (var b in bytes) c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}
