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

    /// <summary>Deeper nesting (block or flow) is rejected: the parser recurses once per level.</summary>
    public const int MaxDepth = 64;

    public static object? Parse(string text) => Parse(text, out _);

    /// <summary>
    /// Parses <paramref name="text"/>; <paramref name="lines"/> maps each value's path ("models[0].parameters.weight",
    /// the names MergeConfig's errors use) to its 1-based line, so later checks can name the line.
    /// </summary>
    public static object? Parse(string text, out IReadOnlyDictionary<string, int> lines)
    {
        var paths = new Dictionary<string, int>(StringComparer.Ordinal);
        lines = paths;
        var all = new List<Line>();
        var raw = text.Replace("\r\n", "\n").Split('\n');
        for (var i = 0; i < raw.Length; i++)
        {
            var l = StripComment(raw[i]).TrimEnd();
            if (l.Trim().Length == 0 || l.Trim() == "---") continue;
            var indent = l.Length - l.TrimStart(' ').Length;
            if (l[indent] == '\t') throw Error(i + 1, "tabs cannot indent YAML; use spaces");
            all.Add(new Line(i + 1, indent, l[indent..]));
        }
        if (all.Count == 0) return null;
        var parser = new Parser(all, paths);
        var value = parser.Block(all[0].Indent, "", 1);
        if (parser.Pos < all.Count) throw Error(all[parser.Pos].Number, $"unexpected indentation at '{all[parser.Pos].Text}'");
        return value;
    }

    static bool IsItem(Line l) => l.Text == "-" || l.Text.StartsWith("- ", StringComparison.Ordinal);

    static string Child(string path, string key) => path.Length == 0 ? key : path + "." + key;

    /// <summary>One parse: the lines, the position in them, and the line of every path read so far.</summary>
    sealed class Parser(List<Line> lines, Dictionary<string, int> paths)
    {
        public int Pos;

        static void Deeper(int depth, int lineNo)
        {
            if (depth > MaxDepth) throw Error(lineNo, $"nesting deeper than {MaxDepth} levels");
        }

        public object? Block(int indent, string path, int depth)
        {
            Deeper(depth, lines[Pos].Number);
            return IsItem(lines[Pos]) ? List(indent, path, depth) : Map(indent, path, depth);
        }

        List<object?> List(int indent, string path, int depth)
        {
            var list = new List<object?>();
            while (Pos < lines.Count && lines[Pos].Indent == indent && IsItem(lines[Pos]))
            {
                var line = lines[Pos];
                var item = $"{path}[{list.Count}]";
                paths[item] = line.Number;
                var rest = line.Text.Length > 1 ? line.Text[2..] : "";
                var inner = rest.TrimStart(' ');
                if (inner.Length == 0)
                {
                    Pos++;
                    list.Add(Pos < lines.Count && lines[Pos].Indent > indent ? Block(lines[Pos].Indent, item, depth + 1) : null);
                }
                else if (KeySplit(inner) is not null)
                {
                    // "- key: value": the item is a map whose keys line up with "key".
                    line.Indent = indent + 2 + (rest.Length - inner.Length);
                    line.Text = inner;
                    Deeper(depth + 1, line.Number);
                    list.Add(Map(line.Indent, item, depth + 1));
                }
                else
                {
                    list.Add(Inline(inner, line.Number, item, depth + 1));
                    Pos++;
                }
            }
            return list;
        }

        Dictionary<string, object?> Map(int indent, string path, int depth)
        {
            var map = new Dictionary<string, object?>(StringComparer.Ordinal);
            while (Pos < lines.Count && lines[Pos].Indent == indent && !IsItem(lines[Pos]))
            {
                var line = lines[Pos];
                var kv = KeySplit(line.Text) ?? throw Error(line.Number, $"expected 'key: value', got '{line.Text}'");
                if (map.ContainsKey(kv.Key)) throw Error(line.Number, $"key '{kv.Key}' appears twice");
                var key = Child(path, kv.Key);
                paths[key] = line.Number;
                Pos++;
                object? value;
                if (kv.Value.Length > 0) value = Inline(kv.Value, line.Number, key, depth + 1);
                else if (Pos < lines.Count && lines[Pos].Indent > indent) value = Block(lines[Pos].Indent, key, depth + 1);
                else if (Pos < lines.Count && lines[Pos].Indent == indent && IsItem(lines[Pos])) { Deeper(depth + 1, line.Number); value = List(indent, key, depth + 1); }
                else value = null;
                map[kv.Key] = value;
            }
            return map;
        }

        object? Inline(string text, int lineNo, string path, int depth)
        {
            var p = 0;
            var v = Flow(text, ref p, lineNo, inFlow: false, path, depth);
            SkipSpaces(text, ref p);
            if (p < text.Length) throw Error(lineNo, $"unexpected '{text[p..]}' after a value");
            return v;
        }

        object? Flow(string s, ref int p, int lineNo, bool inFlow, string? path, int depth)
        {
            Deeper(depth, lineNo);
            if (path is not null) paths.TryAdd(path, lineNo);
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
                    list.Add(Flow(s, ref p, lineNo, inFlow: true, path is null ? null : $"{path}[{list.Count}]", depth + 1));
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
                    var key = Flow(s, ref p, lineNo, inFlow: true, null, depth + 1) as string ?? throw Error(lineNo, "flow map keys must be strings");
                    SkipSpaces(s, ref p);
                    if (p >= s.Length || s[p] != ':') throw Error(lineNo, $"expected ':' after flow map key '{key}'");
                    p++;
                    // path is null inside a key ("{{a: 1}: 2}"): the collection is no string, and the caller refuses it.
                    if (!map.TryAdd(key, Flow(s, ref p, lineNo, inFlow: true, path is null ? null : Child(path, key), depth + 1))) throw Error(lineNo, $"key '{key}' appears twice");
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

    static void SkipSpaces(string s, ref int p) { while (p < s.Length && s[p] == ' ') p++; }

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
