using System.Security.Cryptography;
using System.Text;

namespace Research.Pipelines;

/// <summary>
/// A stage key from its recorded ingredients (what node.json and a provenance manifest hold) rather than from a
/// <see cref="Stage"/> value: the same text and hash as <see cref="Executor.Key"/>, so that `research provenance`
/// can recompute the key of a stage it only knows from a manifest. ProvenanceTests checks that both agree.
/// </summary>
public static class StageKey
{
    public static string Of(int format, string kind, int code, string configJson, long seed, IEnumerable<string> parentKeys,
        IEnumerable<string> dataFingerprints, string files)
    {
        var text = string.Join("\n", [$"format={format}", $"kind={kind}", $"code={code}", $"config={configJson}", $"seed={seed}",
            $"parents={string.Join(",", parentKeys)}", $"data={string.Join(",", dataFingerprints)}", $"files={files}"]);
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..16].ToLowerInvariant();
    }
}
