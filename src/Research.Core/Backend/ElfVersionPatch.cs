using System.Buffers.Binary;
using System.Text;

namespace Research.Backend;

/// <summary>
/// Marks one symbol-version requirement of an ELF64 shared library as weak (VER_FLG_WEAK),
/// so the dynamic loader accepts a system library that lacks that version. Pure C#: no
/// Python, no C compiler. Only the two flag bytes of the matching Vernaux entry change.
/// </summary>
public static class ElfVersionPatch
{
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    /// <summary>Returns the patched bytes, or null when no requirement of that version exists.</summary>
    public static byte[]? MarkVersionWeak(byte[] elf, string version)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file (no \\x7fELF magic)");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("only little-endian ELF64 is supported");
        var span = elf.AsSpan();
        long shoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(span[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3A..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3C..]);
        var copy = (byte[])elf.Clone();
        bool changed = false;
        for (int i = 0; i < shnum; i++)
        {
            var sh = span.Slice((int)(shoff + (long)i * shentsize), shentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != ShtGnuVerneed) continue;
            long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[24..]);
            int link = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[40..]);
            int count = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[44..]);
            var strSh = span.Slice((int)(shoff + (long)link * shentsize), shentsize);
            long strOff = (long)BinaryPrimitives.ReadUInt64LittleEndian(strSh[24..]);
            long need = offset;
            for (int n = 0; n < count; n++)
            {
                int cnt = BinaryPrimitives.ReadUInt16LittleEndian(span[(int)(need + 2)..]);
                long aux = need + BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(need + 8)..]);
                for (int a = 0; a < cnt; a++)
                {
                    uint name = BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(aux + 8)..]);
                    if (ReadCString(span, strOff + name) == version)
                    {
                        int flagsAt = (int)(aux + 4);
                        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(span[flagsAt..]);
                        BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(flagsAt), (ushort)(flags | VerFlgWeak));
                        changed = true;
                    }
                    aux += BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(aux + 12)..]);
                }
                uint next = BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(need + 12)..]);
                if (next == 0) break;
                need += next;
            }
        }
        return changed ? copy : null;
    }

    static string ReadCString(ReadOnlySpan<byte> span, long at)
    {
        int start = (int)at, end = start;
        while (end < span.Length && span[end] != 0) end++;
        return Encoding.ASCII.GetString(span[start..end]);
    }
}
