using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Research.Runs;

/// <summary>
/// A provenance manifest in a PDF's Info dictionary (/ResearchProvenance, a literal string), added by an incremental
/// update: a new Info object, an xref section for it and a trailer whose /Prev points at the old xref, appended after
/// the original bytes, which stay as they were. The old Info entries (Producer, CreationDate...) are kept. A PDF whose
/// cross-reference is a stream (no "trailer" keyword) is left as it is: its sidecar still carries the manifest.
/// </summary>
static partial class ManifestPdf
{
    const string Name = "/ResearchProvenance";

    public static byte[] Embed(byte[] pdf, string json)
    {
        var text = Encoding.Latin1.GetString(pdf);
        if (!text.StartsWith("%PDF-", StringComparison.Ordinal))
            throw new InvalidDataException("not a PDF document (no %PDF- header): cannot put the provenance manifest in it");
        var startxref = text.LastIndexOf("startxref", StringComparison.Ordinal);
        var trailerAt = text.LastIndexOf("trailer", StringComparison.Ordinal);
        if (startxref < 0 || trailerAt < 0 || trailerAt > startxref) return pdf;
        var prev = Regex.Match(text[(startxref + 9)..], @"\s*(\d+)");
        var trailer = text[trailerAt..startxref];
        var size = Regex.Match(trailer, @"/Size\s+(\d+)");
        var root = Regex.Match(trailer, @"/Root\s+(\d+\s+\d+\s+R)");
        if (!prev.Success || !size.Success || !root.Success) return pdf;
        var id = Regex.Match(trailer, @"/ID\s*\[[^\]]*\]");
        var entries = "";
        if (Regex.Match(trailer, @"/Info\s+(\d+)\s+(\d+)\s+R") is { Success: true } info
            && Regex.Match(text, $@"(?<![0-9]){info.Groups[1].Value}\s+{info.Groups[2].Value}\s+obj\s*<<(.*?)>>\s*endobj", RegexOptions.Singleline) is { Success: true } old)
            entries = Regex.Replace(old.Groups[1].Value, @"/ResearchProvenance\s*\((?:\\.|[^\\)])*\)", "").Trim();
        var n = int.Parse(size.Groups[1].Value, CultureInfo.InvariantCulture);
        var sb = new StringBuilder();
        var newline = pdf.Length > 0 && pdf[^1] is (byte)'\n' or (byte)'\r' ? "" : "\n";
        var objectAt = pdf.Length + newline.Length;
        sb.Append(newline);
        sb.Append(CultureInfo.InvariantCulture, $"{n} 0 obj\n<< {entries} {Name} ({Escape(json)}) >>\nendobj\n");
        var xrefAt = pdf.Length + sb.Length;
        sb.Append(CultureInfo.InvariantCulture, $"xref\n{n} 1\n{objectAt:D10} 00000 n \n");
        sb.Append(CultureInfo.InvariantCulture, $"trailer\n<< /Size {n + 1} /Root {root.Groups[1].Value} /Info {n} 0 R /Prev {prev.Groups[1].Value}{(id.Success ? " " + id.Value : "")} >>\n");
        sb.Append(CultureInfo.InvariantCulture, $"startxref\n{xrefAt}\n%%EOF\n");
        return [.. pdf, .. Encoding.Latin1.GetBytes(sb.ToString())];
    }

    /// <summary>The last /ResearchProvenance string of the file, unescaped; null when there is none.</summary>
    public static string? Read(byte[] pdf)
    {
        var text = Encoding.Latin1.GetString(pdf);
        var at = text.LastIndexOf(Name, StringComparison.Ordinal);
        if (at < 0) return null;
        var open = text.IndexOf('(', at);
        if (open < 0) return null;
        var sb = new StringBuilder();
        var depth = 1;
        for (var i = open + 1; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\\' && i + 1 < text.Length) { sb.Append(text[++i]); continue; }
            if (c == '(') depth++;
            else if (c == ')' && --depth == 0) return sb.ToString();
            sb.Append(c);
        }
        return null;
    }

    static string Escape(string s) => s.Replace(@"\", @"\\").Replace("(", @"\(").Replace(")", @"\)");
}
