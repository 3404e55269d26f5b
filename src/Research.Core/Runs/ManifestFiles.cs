using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Research.Runs;

/// <summary>
/// Writes an export with its provenance and reads it back. Every export gets a sidecar, FILE.provenance.json (the
/// manifest, the file's name and SHA-256); the manifest also goes inside the file where the format has a place for it:
/// HTML (a JSON script element in the head), SVG (a metadata element), PNG (a tEXt chunk), PDF (the Info dictionary,
/// by an incremental update), LaTeX (a % comment line), Markdown (an HTML comment), Parquet (the footer's key-value
/// metadata, written by <see cref="StoreExport"/>). CSV and JSONL have no such place: the sidecar only.
/// </summary>
public static partial class ManifestFiles
{
    /// <summary>The key (PNG keyword, HTML/SVG element id, comment label, Parquet metadata key) the manifest is stored under.</summary>
    public const string Key = "research-provenance";

    /// <summary>Writes <paramref name="content"/> to <paramref name="path"/> with the manifest inside (where the format allows) and the sidecar, each atomically.</summary>
    public static void Write(string path, byte[] content, Manifest manifest)
    {
        ArgumentNullException.ThrowIfNull(content);
        ArgumentNullException.ThrowIfNull(manifest);
        var named = manifest with { File = Path.GetFileName(path), Sha256 = null };
        var bytes = Embed(path, content, named);
        AtomicFile.WriteAllBytes(path, bytes);
        AtomicFile.WriteAllText(Manifest.SidecarOf(path), (named with { Sha256 = Sha256Of(bytes) }).ToJson());
    }

    public static void WriteText(string path, string text, Manifest manifest) => Write(path, Encoding.UTF8.GetBytes(text), manifest);

    /// <summary>The sidecar of a file already written (with its manifest inside, if any, by whoever wrote it).</summary>
    public static void WriteSidecar(string path, Manifest manifest) =>
        AtomicFile.WriteAllText(Manifest.SidecarOf(path), (manifest with { File = Path.GetFileName(path), Sha256 = Sha256Of(File.ReadAllBytes(path)) }).ToJson());

    /// <summary>The manifest of a file: its sidecar, else the one inside it; null when it has neither.</summary>
    public static Manifest? Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        var sidecar = Manifest.SidecarOf(path);
        if (File.Exists(sidecar)) return Manifest.Parse(File.ReadAllText(sidecar), sidecar);
        return Embedded(path) is { } json ? Manifest.Parse(json, $"{path} (its embedded manifest)") : null;
    }

    /// <summary>Whether the file's bytes are still those the sidecar recorded (null when there is no sidecar or it has no hash).</summary>
    public static bool? Unchanged(string path, Manifest manifest) =>
        manifest.Sha256 is { } sha ? Sha256Of(File.ReadAllBytes(path)) == sha : null;

    /// <summary>The content with the manifest inside, by the file's extension; unchanged for formats without a place for it.</summary>
    public static byte[] Embed(string path, byte[] content, Manifest manifest)
    {
        var json = manifest.ToCompactJson();
        string Text() => Encoding.UTF8.GetString(content);
        return Extension(path) switch
        {
            ".html" or ".htm" => Encoding.UTF8.GetBytes(InsertBefore(Text(), "</head>",
                $"<meta name=\"generator\" content=\"Research {System.Net.WebUtility.HtmlEncode(manifest.Framework)}\">\n<script type=\"application/json\" id=\"{Key}\">{json}</script>\n")),
            ".svg" => Encoding.UTF8.GetBytes(InsertAfterSvgTag(Text(), $"<metadata id=\"{Key}\">{json}</metadata>")),
            ".tex" => Encoding.UTF8.GetBytes($"% {Key}: {json}\n" + Text()),
            ".md" => Encoding.UTF8.GetBytes($"<!-- {Key}: {json} -->\n" + Text()),
            ".png" => ManifestPng.Embed(content, Key, json),
            ".pdf" => ManifestPdf.Embed(content, json),
            _ => content,
        };
    }

    /// <summary>The manifest JSON inside a file, or null.</summary>
    public static string? Embedded(string path)
    {
        Match m;
        switch (Extension(path))
        {
            case ".html" or ".htm":
                m = HtmlManifest().Match(File.ReadAllText(path));
                return m.Success ? m.Groups[1].Value : null;
            case ".svg":
                m = SvgManifest().Match(File.ReadAllText(path));
                return m.Success ? m.Groups[1].Value : null;
            case ".tex":
                return File.ReadLines(path).Take(50).FirstOrDefault(l => l.StartsWith($"% {Key}: ", StringComparison.Ordinal)) is { } line ? line[(Key.Length + 4)..] : null;
            case ".md":
                m = MarkdownManifest().Match(File.ReadAllText(path));
                return m.Success ? m.Groups[1].Value : null;
            case ".png": return ManifestPng.Read(File.ReadAllBytes(path), Key);
            case ".pdf": return ManifestPdf.Read(File.ReadAllBytes(path));
            case ".parquet": return StoreExport.ParquetMetadata(path, Key);
            default: return null;
        }
    }

    static string Extension(string path) => Path.GetExtension(path).ToLowerInvariant();

    internal static string Sha256Of(byte[] bytes) => Convert.ToHexString(SHA256.HashData(bytes)).ToLowerInvariant();

    static string InsertBefore(string text, string marker, string insert)
    {
        var i = text.IndexOf(marker, StringComparison.OrdinalIgnoreCase);
        return i < 0 ? insert + text : text.Insert(i, insert);
    }

    static string InsertAfterSvgTag(string svg, string insert)
    {
        var open = svg.IndexOf("<svg", StringComparison.Ordinal);
        var end = open < 0 ? -1 : svg.IndexOf('>', open);
        if (end < 0) throw new InvalidDataException("not an SVG document: no <svg> element to put the provenance manifest in");
        return svg.Insert(end + 1, insert);
    }

    [GeneratedRegex("<script type=\"application/json\" id=\"research-provenance\">(.*?)</script>", RegexOptions.Singleline)]
    private static partial Regex HtmlManifest();

    [GeneratedRegex("<metadata id=\"research-provenance\">(.*?)</metadata>", RegexOptions.Singleline)]
    private static partial Regex SvgManifest();

    [GeneratedRegex("<!-- research-provenance: (.*?) -->", RegexOptions.Singleline)]
    private static partial Regex MarkdownManifest();
}
