using System.Text;

namespace Research.Templates;

/// <summary>The Python methods templates call on values: str (strip, split, startswith, replace,
/// format...), dict (items, keys, values, get) and list (index, count). Mutating methods (append,
/// update, pop...) are refused, as transformers' ImmutableSandboxedEnvironment refuses them.</summary>
internal static class Methods
{
    static readonly HashSet<string> Mutating =
        ["append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "update", "setdefault", "popitem"];

    public static ICallable? Find(object? receiver, string name)
    {
        Func<Arguments, object?>? body = receiver switch
        {
            string s => StringMethod(s, name),
            JinjaDict d => DictMethod(d, name),
            List<object?> or PyTuple => ListMethod(receiver, name),
            _ => null,
        };
        if (body is null && receiver is List<object?> or JinjaDict && Mutating.Contains(name))
            body = _ => throw new JinjaError($"method '{Py.TypeName(receiver)}.{name}' is not supported (templates cannot modify values)");
        return body is null ? null : new BuiltinFunction($"{Py.TypeName(receiver)}.{name}", body);
    }

    static string Arg(Arguments a, int i, string method)
    {
        var v = a.Get(i, "");
        return v as string ?? throw new JinjaError($"{method}() argument must be str, not {Py.TypeName(v)}");
    }

    static string? OptChars(Arguments a, string method)
    {
        var v = a.Get(0, "chars");
        return v is null ? null : v as string ?? throw new JinjaError($"{method} arg must be None or str");
    }

    public static string Strip(string s, string? chars, bool left, bool right)
    {
        int start = 0, end = s.Length;
        bool Strippable(char c) => chars is null ? char.IsWhiteSpace(c) : chars.Contains(c);
        if (left) while (start < end && Strippable(s[start])) start++;
        if (right) while (end > start && Strippable(s[end - 1])) end--;
        return s[start..end];
    }

    public static List<object?> Split(string s, string? sep, long maxsplit)
    {
        var result = new List<object?>();
        if (sep is null)
        {
            int i = 0;
            while (true)
            {
                while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                if (i >= s.Length) break;
                if (maxsplit >= 0 && result.Count == maxsplit) { result.Add(s[i..].TrimEnd()); break; }
                int j = i;
                while (j < s.Length && !char.IsWhiteSpace(s[j])) j++;
                result.Add(s[i..j]);
                i = j;
            }
            return result;
        }
        if (sep.Length == 0) throw new JinjaError("empty separator");
        int pos = 0;
        while (maxsplit < 0 || result.Count < maxsplit)
        {
            int k = s.IndexOf(sep, pos, StringComparison.Ordinal);
            if (k < 0) break;
            result.Add(s[pos..k]);
            pos = k + sep.Length;
        }
        result.Add(s[pos..]);
        return result;
    }

    /// <summary>Python's str.title(): a letter after a non-letter is upper-cased, every other lower-cased.</summary>
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevCased = false;
        foreach (char c in s)
        {
            sb.Append(prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            prevCased = char.IsLetter(c);
        }
        return sb.ToString();
    }

    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    static bool AffixMatch(string s, object? affix, bool start, string method)
    {
        IEnumerable<object?> options = affix is PyTuple t ? t.Items : [affix];
        foreach (var o in options)
        {
            if (o is not string a) throw new JinjaError($"{method} first arg must be str or a tuple of str, not {Py.TypeName(o)}");
            if (start ? s.StartsWith(a, StringComparison.Ordinal) : s.EndsWith(a, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    static Func<Arguments, object?>? StringMethod(string s, string name) => name switch
    {
        "strip" => a => Strip(s, OptChars(a, name), true, true),
        "lstrip" => a => Strip(s, OptChars(a, name), true, false),
        "rstrip" => a => Strip(s, OptChars(a, name), false, true),
        "split" => a => Split(s, a.Get(0, "sep") as string, a.Get(1, "maxsplit") is long m ? m : -1),
        "rsplit" => a =>
        {
            if (a.Get(1, "maxsplit") is long m && m >= 0) throw new JinjaError("rsplit() with maxsplit is not supported");
            return Split(s, a.Get(0, "sep") as string, -1);
        },
        "splitlines" => _ =>
        {
            var parts = Split(s.Replace("\r\n", "\n").Replace('\r', '\n'), "\n", -1);
            if ((string)parts[^1]! == "") parts.RemoveAt(parts.Count - 1);
            return parts;
        },
        "startswith" => a => AffixMatch(s, a.Get(0, "prefix"), true, name),
        "endswith" => a => AffixMatch(s, a.Get(0, "suffix"), false, name),
        "upper" => _ => s.ToUpperInvariant(),
        "lower" => _ => s.ToLowerInvariant(),
        "title" => _ => Title(s),
        "capitalize" => _ => Capitalize(s),
        "replace" => a =>
        {
            string old = Arg(a, 0, name), @new = Arg(a, 1, name);
            long count = a.Get(2, "count") is long c ? c : -1;
            return Replace(s, old, @new, count);
        },
        "find" => a => (long)s.IndexOf(Arg(a, 0, name), StringComparison.Ordinal),
        "rfind" => a => (long)s.LastIndexOf(Arg(a, 0, name), StringComparison.Ordinal),
        "count" => a => CountOccurrences(s, Arg(a, 0, name)),
        "join" => a => string.Join(s, Py.Iterate(a.Get(0, "iterable")).Select(x => x as string ?? throw new JinjaError($"sequence item: expected str instance, {Py.TypeName(x)} found"))),
        "format" => a => Format(s, a),
        "isdigit" => _ => s.Length > 0 && s.All(char.IsDigit),
        "isalpha" => _ => s.Length > 0 && s.All(char.IsLetter),
        "isalnum" => _ => s.Length > 0 && s.All(char.IsLetterOrDigit),
        "isspace" => _ => s.Length > 0 && s.All(char.IsWhiteSpace),
        "isupper" => _ => s.Any(char.IsLetter) && !s.Any(char.IsLower),
        "islower" => _ => s.Any(char.IsLetter) && !s.Any(char.IsUpper),
        _ => null,
    };

    public static string Replace(string s, string old, string @new, long count)
    {
        if (count < 0) return old.Length == 0 ? InsertBetween(s, @new) : s.Replace(old, @new, StringComparison.Ordinal);
        var sb = new StringBuilder();
        int pos = 0;
        for (long n = 0; n < count && old.Length > 0; n++)
        {
            int k = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (k < 0) break;
            sb.Append(s, pos, k - pos).Append(@new);
            pos = k + old.Length;
        }
        return sb.Append(s, pos, s.Length - pos).ToString();
    }

    static string InsertBetween(string s, string sep) => sep + string.Concat(Py.Chars(s).Select(c => (string)c! + sep));

    static long CountOccurrences(string s, string sub)
    {
        if (sub.Length == 0) return Py.Chars(s).Count + 1;
        long n = 0;
        for (int k = s.IndexOf(sub, StringComparison.Ordinal); k >= 0; k = s.IndexOf(sub, k + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    /// <summary>str.format with <c>{}</c>, <c>{0}</c> and <c>{name}</c> fields (no format specs).</summary>
    static string Format(string s, Arguments a)
    {
        var sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == '{' && i + 1 < s.Length && s[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < s.Length && s[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (c != '{') { sb.Append(c); continue; }
            int close = s.IndexOf('}', i);
            if (close < 0) throw new JinjaError("Single '{' encountered in format string");
            string field = s[(i + 1)..close];
            if (field.Contains(':') || field.Contains('!')) throw new JinjaError("format specs in str.format() are not supported");
            object? value;
            if (field.Length == 0) value = a.Positional.ElementAtOrDefault(auto++);
            else if (int.TryParse(field, out int k)) value = a.Positional.ElementAtOrDefault(k);
            else value = a.Keyword.FirstOrDefault(kw => kw.Name == field).Value;
            sb.Append(Py.Str(value));
            i = close;
        }
        return sb.ToString();
    }

    static Func<Arguments, object?>? DictMethod(JinjaDict d, string name) => name switch
    {
        "items" => _ => d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList(),
        "keys" => _ => d.Keys.Cast<object?>().ToList(),
        "values" => _ => d.Select(kv => kv.Value).ToList(),
        "get" => a =>
        {
            var key = a.Get(0, "key");
            return key is not null && Py.IsHashable(key) && d.TryGet(key, out var v) ? v : a.Get(1, "default");
        },
        "copy" => _ =>
        {
            var copy = new JinjaDict();
            foreach (var (k, v) in d) copy.Set(k, v);
            return copy;
        },
        _ => null,
    };

    static Func<Arguments, object?>? ListMethod(object receiver, string name)
    {
        IReadOnlyList<object?> items = receiver is PyTuple t ? t.Items : (List<object?>)receiver;
        return name switch
        {
            "index" => a =>
            {
                var x = a.Get(0, "value");
                for (int i = 0; i < items.Count; i++) if (Py.Equal(items[i], x)) return (long)i;
                throw new JinjaError($"{Py.Repr(x)} is not in list");
            },
            "count" => a => (long)items.Count(i => Py.Equal(i, a.Get(0, "value"))),
            "copy" when receiver is List<object?> l => _ => l.ToList(),
            _ => null,
        };
    }
}
