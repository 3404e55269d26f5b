using System.Globalization;
using System.Text;

namespace Research.Stages.Merge;

/// <summary>
/// The YAML subset mergekit configs use, parsed to plain values: maps (Dictionary&lt;string, object?&gt;, keys in
/// order, duplicates rejected), lists (List&lt;object?&gt;), strings, doubles, bools and null. Supported: block maps
/// and lists by indentation (spaces only), "- key: value" items, flow lists [a, b] and maps {a: 1}, single and
/// double quoted scalars, # comments. Not supported (rejected or read as plain text): anchors, tags, multi-line
/// scalars, multiple documents.
/// </summary>
public static class MiniYaml
{
    sealed class Line(int number, int indent, string text)
    {
        public int Number = number;
        public int Indent = indent;
        public string Text = text;
    }

    public static object? Parse(string text)
    {
        var lines = new List<Line>();
        var raw = text.Replace("\r\n", "\n").Split('\n');
        for (var i = 0; i < raw.Length; i++)
        {
            var l = StripComment(raw[i]).TrimEnd();
            if (l.Trim().Length == 0 || l.Trim() == "---") continue;
            var indent = l.Length - l.TrimStart(' ').Length;
            if (l[indent] == '\t') throw Error(i + 1, "tabs cannot indent YAML; use spaces");
            lines.Add(new Line(i + 1, indent, l[indent..]));
        }
        if (lines.Count == 0) return null;
        var pos = 0;
        var value = Block(lines, ref pos, lines[0].Indent);
        if (pos < lines.Count) throw Error(lines[pos].Number, $"unexpected indentation at '{lines[pos].Text}'");
        return value;
    }

    static bool IsItem(Line l) => l.Text == "-" || l.Text.StartsWith("- ", StringComparison.Ordinal);

    static object? Block(List<Line> lines, ref int pos, int indent) =>
        IsItem(lines[pos]) ? List(lines, ref pos, indent) : Map(lines, ref pos, indent);

    static List<object?> List(List<Line> lines, ref int pos, int indent)
    {
        var list = new List<object?>();
        while (pos < lines.Count && lines[pos].Indent == indent && IsItem(lines[pos]))
        {
            var line = lines[pos];
            var rest = line.Text.Length > 1 ? line.Text[2..] : "";
            var inner = rest.TrimStart(' ');
            if (inner.Length == 0)
            {
                pos++;
                list.Add(pos < lines.Count && lines[pos].Indent > indent ? Block(lines, ref pos, lines[pos].Indent) : null);
            }
            else if (KeySplit(inner) is not null)
            {
                // "- key: value": the item is a map whose keys line up with "key".
                line.Indent = indent + 2 + (rest.Length - inner.Length);
                line.Text = inner;
                list.Add(Map(lines, ref pos, line.Indent));
            }
            else
            {
                list.Add(Inline(inner, line.Number));
                pos++;
            }
        }
        return list;
    }

    static Dictionary<string, object?> Map(List<Line> lines, ref int pos, int indent)
    {
        var map = new Dictionary<string, object?>(StringComparer.Ordinal);
        while (pos < lines.Count && lines[pos].Indent == indent && !IsItem(lines[pos]))
        {
            var line = lines[pos];
            var kv = KeySplit(line.Text) ?? throw Error(line.Number, $"expected 'key: value', got '{line.Text}'");
            if (map.ContainsKey(kv.Key)) throw Error(line.Number, $"key '{kv.Key}' appears twice");
            pos++;
            object? value;
            if (kv.Value.Length > 0) value = Inline(kv.Value, line.Number);
            else if (pos < lines.Count && lines[pos].Indent > indent) value = Block(lines, ref pos, lines[pos].Indent);
            else if (pos < lines.Count && lines[pos].Indent == indent && IsItem(lines[pos])) value = List(lines, ref pos, indent);
            else value = null;
            map[kv.Key] = value;
        }
        return map;
    }

    /// <summary>"key: rest" or "key:" (key plain or quoted); null when the text is not a map entry.</summary>
    static (string Key, string Value)? KeySplit(string text)
    {
        if (text.Length == 0 || text[0] is '[' or '{') return null;
        if (text[0] is '"' or '\'')
        {
            var end = text.IndexOf(text[0], 1);
            if (end < 0 || end + 1 >= text.Length || text[end + 1] != ':') return null;
            var after = text[(end + 2)..];
            if (after.Length > 0 && after[0] != ' ') return null;
            return (text[1..end], after.Trim());
        }
        var i = text.IndexOf(": ", StringComparison.Ordinal);
        if (i < 0) return text.EndsWith(':') ? (text[..^1].Trim(), "") : null;
        return (text[..i].Trim(), text[(i + 2)..].Trim());
    }

    static string StripComment(string line)
    {
        char quote = '\0';
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (quote != '\0') { if (c == quote) quote = '\0'; }
            else if (c is '"' or '\'') quote = c;
            else if (c == '#' && (i == 0 || line[i - 1] == ' ')) return line[..i];
        }
        return line;
    }

    static object? Inline(string text, int lineNo)
    {
        var p = 0;
        var v = Flow(text, ref p, lineNo, inFlow: false);
        SkipSpaces(text, ref p);
        if (p < text.Length) throw Error(lineNo, $"unexpected '{text[p..]}' after a value");
        return v;
    }

    static void SkipSpaces(string s, ref int p) { while (p < s.Length && s[p] == ' ') p++; }

    static object? Flow(string s, ref int p, int lineNo, bool inFlow)
    {
        SkipSpaces(s, ref p);
        if (p >= s.Length) return null;
        if (s[p] is '&' or '*' or '!' or '|' or '>') throw Error(lineNo, $"YAML feature '{s[p]}' (anchors, tags, block scalars) is not supported here");
        if (s[p] == '[')
        {
            p++;
            var list = new List<object?>();
            SkipSpaces(s, ref p);
            if (p < s.Length && s[p] == ']') { p++; return list; }
            while (true)
            {
                list.Add(Flow(s, ref p, lineNo, inFlow: true));
                SkipSpaces(s, ref p);
                if (p < s.Length && s[p] == ',') { p++; continue; }
                if (p < s.Length && s[p] == ']') { p++; return list; }
                throw Error(lineNo, "unterminated flow list '['");
            }
        }
        if (s[p] == '{')
        {
            p++;
            var map = new Dictionary<string, object?>(StringComparer.Ordinal);
            SkipSpaces(s, ref p);
            if (p < s.Length && s[p] == '}') { p++; return map; }
            while (true)
            {
                var key = Flow(s, ref p, lineNo, inFlow: true) as string ?? throw Error(lineNo, "flow map keys must be strings");
                SkipSpaces(s, ref p);
                if (p >= s.Length || s[p] != ':') throw Error(lineNo, $"expected ':' after flow map key '{key}'");
                p++;
                if (!map.TryAdd(key, Flow(s, ref p, lineNo, inFlow: true))) throw Error(lineNo, $"key '{key}' appears twice");
                SkipSpaces(s, ref p);
                if (p < s.Length && s[p] == ',') { p++; continue; }
                if (p < s.Length && s[p] == '}') { p++; return map; }
                throw Error(lineNo, "unterminated flow map '{'");
            }
        }
        if (s[p] is '"' or '\'') return Quoted(s, ref p, lineNo);
        var start = p;
        while (p < s.Length && !(inFlow && s[p] is ',' or ']' or '}' or ':')) p++;
        return Plain(s[start..p].Trim());
    }

    static string Quoted(string s, ref int p, int lineNo)
    {
        var q = s[p++];
        var sb = new StringBuilder();
        while (p < s.Length)
        {
            var c = s[p++];
            if (c == q)
            {
                if (q == '\'' && p < s.Length && s[p] == '\'') { sb.Append('\''); p++; continue; }
                return sb.ToString();
            }
            if (q == '"' && c == '\\' && p < s.Length)
            {
                var e = s[p++];
                sb.Append(e switch { 'n' => '\n', 't' => '\t', '\\' => '\\', '"' => '"', _ => throw Error(lineNo, $"escape '\\{e}' is not supported") });
                continue;
            }
            sb.Append(c);
        }
        throw Error(lineNo, "unterminated quoted string");
    }

    static object? Plain(string t)
    {
        if (t is "" or "~" or "null" or "Null" or "NULL") return null;
        if (t is "true" or "True" or "TRUE") return true;
        if (t is "false" or "False" or "FALSE") return false;
        if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var d)) return d;
        return t;
    }

    static InvalidDataException Error(int line, string what) => new($"YAML line {line}: {what}");
}
