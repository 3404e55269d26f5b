using System.Security.Cryptography;
using System.Text;

namespace Research.Pipelines;

/// <summary>
/// A stage key from its ingredients: the one definition of the key's text and hash. <see cref="Executor.Key"/> calls it
/// with a <see cref="Stage"/>'s values; `research provenance` with what node.json and a manifest recorded.
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
