using System.Globalization;
using System.Text;

namespace Research.Templates;

/// <summary>The <c>tojson</c> filter as transformers defines it, which replaces jinja2's own:
/// <c>json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)</c>.
/// Python's json module: ", " and ": " separators (or "," and ": " with an indent), non-ASCII kept,
/// floats as Python's repr, NaN and Infinity, and no HTML escaping.</summary>
internal static class Json
{
    public static string Dumps(object? value, bool ensureAscii = false, object? indent = null, object? separators = null, bool sortKeys = false)
    {
        string? indentUnit = indent switch
        {
            null => null,
            long n => new string(' ', (int)Math.Max(0, n)),
            string s => s,
            _ => throw new JinjaError($"tojson indent must be an int or a str, not {Py.TypeName(indent)}"),
        };
        string itemSep = indentUnit is null ? ", " : ",", keySep = ": ";
        if (separators is not null)
        {
            var parts = separators switch
            {
                PyTuple t => t.Items,
                List<object?> l => l,
                _ => throw new JinjaError("tojson separators must be an (item_separator, key_separator) pair"),
            };
            if (parts.Count != 2 || parts[0] is not string a || parts[1] is not string b)
                throw new JinjaError("tojson separators must be an (item_separator, key_separator) pair");
            (itemSep, keySep) = (a, b);
        }
        var sb = new StringBuilder();
        Write(sb, value, ensureAscii, indentUnit, itemSep, keySep, sortKeys, 0);
        return sb.ToString();
    }

    static void NewLine(StringBuilder sb, string? indent, int level)
    {
        if (indent is null) return;
        sb.Append('\n');
        for (int i = 0; i < level; i++) sb.Append(indent);
    }

    static void Write(StringBuilder sb, object? v, bool ascii, string? indent, string itemSep, string keySep, bool sortKeys, int level)
    {
        switch (v)
        {
            case null: sb.Append("null"); return;
            case bool b: sb.Append(b ? "true" : "false"); return;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); return;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Py.FloatRepr(d));
                return;
            case string s: WriteString(sb, s, ascii); return;
            case List<object?> or PyTuple:
                {
                    var items = v is PyTuple t ? t.Items : (List<object?>)v;
                    if (items.Count == 0) { sb.Append("[]"); return; }
                    sb.Append('[');
                    for (int i = 0; i < items.Count; i++)
                    {
                        if (i > 0) sb.Append(itemSep);
                        NewLine(sb, indent, level + 1);
                        Write(sb, items[i], ascii, indent, itemSep, keySep, sortKeys, level + 1);
                    }
                    NewLine(sb, indent, level);
                    sb.Append(']');
                    return;
                }
            case JinjaDict dict:
                {
                    if (dict.Count == 0) { sb.Append("{}"); return; }
                    var pairs = dict.Select(kv => (Key: KeyString(kv.Key), kv.Value)).ToList();
                    if (sortKeys) pairs = pairs.OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
                    sb.Append('{');
                    for (int i = 0; i < pairs.Count; i++)
                    {
                        if (i > 0) sb.Append(itemSep);
                        NewLine(sb, indent, level + 1);
                        WriteString(sb, pairs[i].Key, ascii);
                        sb.Append(keySep);
                        Write(sb, pairs[i].Value, ascii, indent, itemSep, keySep, sortKeys, level + 1);
                    }
                    NewLine(sb, indent, level);
                    sb.Append('}');
                    return;
                }
            default:
                throw new JinjaError($"Object of type {Py.TypeName(v)} is not JSON serializable");
        }
    }

    static string KeyString(object key) => key switch
    {
        string s => s,
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => Py.FloatRepr(d),
        _ => throw new JinjaError($"keys must be str, int, float, bool or None, not {Py.TypeName(key)}"),
    };

    static void WriteString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e)) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
