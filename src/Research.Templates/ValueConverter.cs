using System.Collections;
using System.Text.Json;

namespace Research.Templates;

/// <summary>Converts the caller's .NET values into template values: strings, integers (to int),
/// floating point (to float), bool, null (None), dictionaries (to dict, in their order), other
/// enumerables (to list), <see cref="JsonElement"/>s, and
/// <c>Func&lt;IReadOnlyList&lt;object?&gt;, object?&gt;</c> (a callable).</summary>
internal static class ValueConverter
{
    public static object? FromClr(object? v) => v switch
    {
        null => null,
        string or bool or long or double or Undefined or JinjaDict or PyTuple or Namespace or ICallable => v,
        List<object?> l => l.Select(FromClr).ToList(),
        int or short or sbyte or byte or ushort or uint => Convert.ToInt64(v),
        ulong u => (long)u,
        float f => (double)f,
        decimal m => (double)m,
        char c => c.ToString(),
        Enum e => e.ToString(),
        JsonElement j => FromJson(j),
        ChatMessage m => Message(m),
        Func<IReadOnlyList<object?>, object?> f => new BuiltinFunction("function", a => FromClr(f(a.Positional))),
        IDictionary d => Dict(d),
        IEnumerable<KeyValuePair<string, object?>> pairs => Dict(pairs),
        IEnumerable e => e.Cast<object?>().Select(FromClr).ToList(),
        _ => throw new ArgumentException($"a template value cannot be of type {v.GetType().Name}"),
    };

    static JinjaDict Message(ChatMessage m)
    {
        var d = new JinjaDict();
        d.Set("role", m.Role);
        d.Set("content", m.Content);
        return d;
    }

    static JinjaDict Dict(IDictionary d)
    {
        var result = new JinjaDict();
        foreach (DictionaryEntry e in d) result.Set(FromClr(e.Key) ?? throw new ArgumentException("a dict key cannot be null"), FromClr(e.Value));
        return result;
    }

    static JinjaDict Dict(IEnumerable<KeyValuePair<string, object?>> pairs)
    {
        var result = new JinjaDict();
        foreach (var (k, v) in pairs) result.Set(k, FromClr(v));
        return result;
    }

    public static object? FromJson(JsonElement j) => j.ValueKind switch
    {
        JsonValueKind.String => j.GetString(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        JsonValueKind.Number => j.TryGetInt64(out var l) ? (object)l : j.GetDouble(),
        JsonValueKind.Array => j.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => JsonObject(j),
        _ => null,
    };

    static JinjaDict JsonObject(JsonElement j)
    {
        var d = new JinjaDict();
        foreach (var p in j.EnumerateObject()) d.Set(p.Name, FromJson(p.Value));
        return d;
    }
}
