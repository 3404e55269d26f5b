using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Research.Stages.Merge;

/// <summary>
/// A YAML document (as mergekit configs are written) read by YamlDotNet's parser into plain values: maps
/// (Dictionary&lt;string, object?&gt;, keys in order, duplicates rejected), lists (List&lt;object?&gt;), strings, doubles,
/// bools and null. A plain scalar is null (<c>~</c>, <c>null</c>, empty), a bool (<c>true</c>, <c>false</c>), a number
/// when it reads as one (<c>1e999</c> and <c>NaN</c> too, which the config checks then refuse), else text; a quoted or
/// block scalar is always text. Refused with their line: anchors and aliases (an alias can expand a small file into a
/// huge tree), tags, more than one document, keys that are not scalars, nesting deeper than <see cref="MaxDepth"/>.
/// </summary>
public static class YamlTree
{
    /// <summary>Deeper nesting (block or flow) is rejected: the reader recurses once per level.</summary>
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
        var parser = new Parser(new StringReader(text));
        try
        {
            Expect<StreamStart>(parser);
            if (Next(parser) is StreamEnd) return null;
            if (parser.Current is not DocumentStart) throw Error(parser.Current!, "expected a YAML document");
            Next(parser);
            var value = Node(parser, "", 1, paths);
            if (parser.Current is not DocumentEnd) throw Error(parser.Current!, "expected the end of the document");
            if (Next(parser) is not StreamEnd) throw Error(parser.Current!, "more than one YAML document; a merge config is one");
            return value;
        }
        catch (YamlException e)
        {
            throw new InvalidDataException($"YAML line {e.Start.Line}: {Detail(e)}", e);
        }
    }

    /// <summary>Reads the node at the current event and moves past it.</summary>
    static object? Node(IParser parser, string path, int depth, Dictionary<string, int> paths)
    {
        var start = Current(parser);
        if (depth > MaxDepth) throw Error(start, $"nesting deeper than {MaxDepth} levels");
        paths.TryAdd(path, Line(start));
        switch (start)
        {
            case AnchorAlias:
                throw Error(start, "YAML aliases ('*') are not supported here");
            case NodeEvent { Anchor.IsEmpty: false }:
                throw Error(start, "YAML anchors ('&') are not supported here");
            case NodeEvent { Tag.IsEmpty: false } n:
                throw Error(start, $"YAML tags ('{n.Tag}') are not supported here");
            case Scalar s:
                Next(parser);
                return s.Style == ScalarStyle.Plain ? Plain(s.Value) : s.Value;
            case SequenceStart:
            {
                var list = new List<object?>();
                Next(parser);
                while (parser.Current is not SequenceEnd)
                {
                    var item = $"{path}[{list.Count}]";
                    paths[item] = Line(Current(parser));
                    list.Add(Node(parser, item, depth + 1, paths));
                }
                Next(parser);
                return list;
            }
            case MappingStart:
            {
                var map = new Dictionary<string, object?>(StringComparer.Ordinal);
                Next(parser);
                while (parser.Current is not MappingEnd)
                {
                    var keyEvent = Current(parser);
                    if (keyEvent is not Scalar { Anchor.IsEmpty: true, Tag.IsEmpty: true } k)
                        throw Error(keyEvent, "map keys must be strings");
                    if (map.ContainsKey(k.Value)) throw Error(keyEvent, $"key '{k.Value}' appears twice");
                    var child = path.Length == 0 ? k.Value : path + "." + k.Value;
                    paths[child] = Line(keyEvent);
                    Next(parser);
                    map[k.Value] = Node(parser, child, depth + 1, paths);
                }
                Next(parser);
                return map;
            }
            default:
                throw Error(start, $"unexpected {start.GetType().Name}");
        }
    }

    /// <summary>The event's 1-based line (a merge config has far fewer than int.MaxValue lines).</summary>
    static int Line(ParsingEvent e) => (int)Math.Min(e.Start.Line, int.MaxValue);

    static ParsingEvent Current(IParser parser) =>
        parser.Current ?? throw new InvalidDataException("YAML: the document ends inside a value");

    static ParsingEvent? Next(IParser parser)
    {
        var last = parser.Current;
        try { return parser.MoveNext() ? parser.Current : null; }
        catch (InvalidOperationException e)
        {
            // YamlDotNet 18.1's scanner throws this on some malformed flow collections (found by ReliabilityFuzz).
            throw new InvalidDataException($"YAML line {(last is null ? 1 : Line(last))}: malformed YAML after this line ({e.Message})", e);
        }
    }

    static void Expect<T>(IParser parser) where T : ParsingEvent
    {
        if (Next(parser) is not T) throw new InvalidDataException($"YAML line 1: expected {typeof(T).Name}");
    }

    /// <summary>YamlDotNet's message without the "(Line: 3, Col: 5, Idx: 20) - (...): " it puts in front.</summary>
    static string Detail(YamlException e)
    {
        var m = e.Message;
        var cut = m.StartsWith("(Line:", StringComparison.Ordinal) ? m.IndexOf("): ", StringComparison.Ordinal) : -1;
        return cut < 0 ? m : m[(cut + 3)..];
    }

    static object? Plain(string t)
    {
        if (t is "" or "~" or "null" or "Null" or "NULL") return null;
        if (t is "true" or "True" or "TRUE") return true;
        if (t is "false" or "False" or "FALSE") return false;
        if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var d)) return d;
        return t;
    }

    static InvalidDataException Error(ParsingEvent at, string what) => new($"YAML line {at.Start.Line}: {what}");
}
