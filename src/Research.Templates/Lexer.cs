using System.Globalization;
using System.Text;

namespace Research.Templates;

/// <summary>Whitespace settings of the jinja2 environment. <see cref="Transformers"/> is what
/// transformers' <c>_compile_jinja_template</c> uses: trim_blocks and lstrip_blocks on, the single
/// trailing newline of the source dropped (jinja2's default keep_trailing_newline=False).</summary>
public sealed record TemplateOptions(bool TrimBlocks, bool LstripBlocks, bool KeepTrailingNewline)
{
    public static TemplateOptions Transformers { get; } = new(true, true, false);
    public static TemplateOptions Jinja2Defaults { get; } = new(false, false, false);
}

/// <summary>Turns template source into tokens, applying jinja2's whitespace control: <c>{%-</c>/<c>-%}</c>
/// (and the <c>{{</c>, <c>{#</c> forms) strip all whitespace on that side, trim_blocks drops the newline
/// after a block or comment tag, lstrip_blocks drops the spaces and tabs before one at a line start,
/// and <c>+</c> turns either off for one tag. Comments are dropped; <c>{% raw %}</c> is read here.</summary>
internal sealed class Lexer
{
    static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    readonly string src;
    readonly string name;
    readonly TemplateOptions options;
    readonly List<Token> tokens = [];
    int pos;
    int line = 1;

    Lexer(string source, string name, TemplateOptions options)
    {
        var s = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (!options.KeepTrailingNewline && s.EndsWith('\n')) s = s[..^1];
        src = s;
        this.name = name;
        this.options = options;
    }

    public static List<Token> Tokenize(string source, string name, TemplateOptions options)
    {
        var lexer = new Lexer(source, name, options);
        lexer.Run();
        return lexer.tokens;
    }

    TemplateException Error(string detail) => new(name, line, detail);

    static bool IsSpace(char c) => char.IsWhiteSpace(c);

    void Run()
    {
        while (pos < src.Length)
        {
            int start = FindTagStart(pos);
            int textStart = pos;
            string text = src[pos..(start < 0 ? src.Length : start)];
            if (start < 0)
            {
                EmitText(text);
                pos = src.Length;
                break;
            }
            char kind = src[start + 1];
            char mod = start + 2 < src.Length ? src[start + 2] : '\0';
            if (mod == '-') text = text.TrimEnd();
            else if (kind != '{' && mod != '+' && options.LstripBlocks)
            {
                int lpos = text.LastIndexOf('\n') + 1;
                bool lineStarting = textStart == 0 || src[textStart - 1] == '\n';
                if ((lpos > 0 || lineStarting) && lpos < text.Length && text[lpos..].All(IsSpace)) text = text[..lpos];
            }
            EmitText(text);
            line += CountNewlines(textStart, start);
            pos = start + 2 + (mod is '-' or '+' ? 1 : 0);
            switch (kind)
            {
                case '#': LexComment(); break;
                case '{': LexTag(TokenKind.VarBegin, TokenKind.VarEnd, "}}"); break;
                default:
                    if (!TryLexRaw()) LexTag(TokenKind.BlockBegin, TokenKind.BlockEnd, "%}");
                    break;
            }
        }
        tokens.Add(new Token(TokenKind.Eof, "", null, line));
    }

    int FindTagStart(int from)
    {
        for (int i = from; i < src.Length - 1; i++)
            if (src[i] == '{' && src[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    int CountNewlines(int from, int to)
    {
        int n = 0;
        for (int i = from; i < to && i < src.Length; i++) if (src[i] == '\n') n++;
        return n;
    }

    void EmitText(string text)
    {
        if (text.Length > 0) tokens.Add(new Token(TokenKind.Text, text, text, line));
    }

    /// <summary>Moves past a closing tag that begins at <see cref="pos"/>: <c>-</c> eats all whitespace
    /// after it; otherwise, for block and comment tags with trim_blocks, one newline (unless <c>+</c>).</summary>
    void CloseTag(bool minus, bool plus, bool trims, int closeLength)
    {
        pos += closeLength;
        if (minus)
        {
            int s = pos;
            while (pos < src.Length && IsSpace(src[pos])) pos++;
            line += CountNewlines(s, pos);
        }
        else if (trims && !plus && options.TrimBlocks && pos < src.Length && src[pos] == '\n')
        {
            pos++;
            line++;
        }
    }

    void LexComment()
    {
        int end = src.IndexOf("#}", pos, StringComparison.Ordinal);
        if (end < 0) throw Error("comment is not closed with '#}'");
        bool minus = end > pos && src[end - 1] == '-';
        bool plus = end > pos && src[end - 1] == '+';
        line += CountNewlines(pos, end);
        pos = end;
        CloseTag(minus, plus, true, 2);
    }

    bool TryLexRaw()
    {
        int p = pos;
        while (p < src.Length && IsSpace(src[p])) p++;
        if (string.CompareOrdinal(src, p, "raw", 0, 3) != 0) return false;
        p += 3;
        while (p < src.Length && IsSpace(src[p])) p++;
        bool minus = p < src.Length && src[p] == '-';
        if (minus || (p < src.Length && src[p] == '+')) p++;
        if (string.CompareOrdinal(src, p, "%}", 0, 2) != 0) return false;
        line += CountNewlines(pos, p);
        pos = p;
        CloseTag(minus, false, true, 2);
        // Find {% endraw %} with optional whitespace control.
        int search = pos;
        while (true)
        {
            int open = src.IndexOf("{%", search, StringComparison.Ordinal);
            if (open < 0) throw Error("'raw' block is not closed with '{% endraw %}'");
            int q = open + 2;
            char mod = q < src.Length ? src[q] : '\0';
            if (mod is '-' or '+') q++;
            while (q < src.Length && IsSpace(src[q])) q++;
            if (string.CompareOrdinal(src, q, "endraw", 0, 6) == 0)
            {
                q += 6;
                while (q < src.Length && IsSpace(src[q])) q++;
                bool endMinus = q < src.Length && src[q] == '-';
                bool endPlus = q < src.Length && src[q] == '+';
                if (endMinus || endPlus) q++;
                if (string.CompareOrdinal(src, q, "%}", 0, 2) == 0)
                {
                    string body = src[pos..open];
                    if (mod == '-') body = body.TrimEnd();
                    else if (mod != '+' && options.LstripBlocks)
                    {
                        int lpos = body.LastIndexOf('\n') + 1;
                        if (lpos > 0 && lpos < body.Length && body[lpos..].All(IsSpace)) body = body[..lpos];
                    }
                    EmitText(body);
                    line += CountNewlines(pos, q);
                    pos = q;
                    CloseTag(endMinus, endPlus, true, 2);
                    return true;
                }
            }
            search = open + 2;
        }
    }

    void LexTag(TokenKind begin, TokenKind end, string close)
    {
        tokens.Add(new Token(begin, begin == TokenKind.VarBegin ? "{{" : "{%", null, line));
        int depth = 0;
        while (true)
        {
            while (pos < src.Length && IsSpace(src[pos]))
            {
                if (src[pos] == '\n') line++;
                pos++;
            }
            if (pos >= src.Length) throw Error($"tag is not closed with '{close}'");
            if (depth == 0)
            {
                bool minus = src[pos] == '-' && string.CompareOrdinal(src, pos + 1, close, 0, 2) == 0;
                bool plus = end == TokenKind.BlockEnd && src[pos] == '+' && string.CompareOrdinal(src, pos + 1, close, 0, 2) == 0;
                if (minus || plus || string.CompareOrdinal(src, pos, close, 0, 2) == 0)
                {
                    tokens.Add(new Token(end, close, null, line));
                    CloseTag(minus, plus, end == TokenKind.BlockEnd, minus || plus ? 3 : 2);
                    return;
                }
            }
            char c = src[pos];
            if (c is '\'' or '"') LexString(c);
            else if (char.IsDigit(c)) LexNumber();
            else if (char.IsLetter(c) || c == '_')
            {
                int s = pos;
                while (pos < src.Length && (char.IsLetterOrDigit(src[pos]) || src[pos] == '_')) pos++;
                tokens.Add(new Token(TokenKind.Name, src[s..pos], null, line));
            }
            else
            {
                string? op = Operators.FirstOrDefault(o => string.CompareOrdinal(src, pos, o, 0, o.Length) == 0);
                if (op is null) throw Error($"unexpected character '{c}'");
                // Only braces nest here: "}}" closing a dict literal inside "{{ }}" is not the tag's end.
                if (op == "{") depth++;
                else if (op == "}") depth = Math.Max(0, depth - 1);
                tokens.Add(new Token(TokenKind.Op, op, null, line));
                pos += op.Length;
            }
        }
    }

    void LexNumber()
    {
        int s = pos;
        void Digits() { while (pos < src.Length && (char.IsDigit(src[pos]) || (src[pos] == '_' && pos + 1 < src.Length && char.IsDigit(src[pos + 1])))) pos++; }
        Digits();
        bool isFloat = false;
        if (pos + 1 < src.Length && src[pos] == '.' && char.IsDigit(src[pos + 1]) && !(s > 0 && src[s - 1] == '.'))
        {
            isFloat = true;
            pos++;
            Digits();
        }
        if (pos < src.Length && src[pos] is 'e' or 'E')
        {
            int save = pos;
            pos++;
            if (pos < src.Length && src[pos] is '+' or '-') pos++;
            if (pos < src.Length && char.IsDigit(src[pos])) { isFloat = true; Digits(); }
            else pos = save;
        }
        string text = src[s..pos].Replace("_", "");
        object value = isFloat
            ? (object)double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture)
            : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var l) ? (object)l : throw Error($"integer literal {text} is too large");
        tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Int, text, value, line));
    }

    void LexString(char quote)
    {
        int startLine = line;
        pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (pos >= src.Length) throw new TemplateException(name, startLine, "string literal is not closed");
            char c = src[pos++];
            if (c == quote) break;
            if (c == '\n') line++;
            if (c != '\\' || pos >= src.Length) { sb.Append(c); continue; }
            char e = src[pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\n': line++; break;
                case 'x': sb.Append(Hex(2)); break;
                case 'u': sb.Append(Hex(4)); break;
                case 'U': sb.Append(Hex(8)); break;
                case >= '0' and <= '7':
                    {
                        int v = e - '0', n = 1;
                        while (n < 3 && pos < src.Length && src[pos] is >= '0' and <= '7') { v = v * 8 + (src[pos++] - '0'); n++; }
                        sb.Append((char)v);
                        break;
                    }
                default: sb.Append('\\').Append(e); break;
            }
        }
        var value = sb.ToString();
        tokens.Add(new Token(TokenKind.String, value, value, startLine));
    }

    string Hex(int digits)
    {
        if (pos + digits > src.Length) throw Error("truncated \\x, \\u or \\U escape in a string literal");
        string h = src.Substring(pos, digits);
        if (!int.TryParse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int cp))
            throw Error($"bad escape '\\{h}' in a string literal");
        pos += digits;
        // As in Python: a surrogate escape is a lone surrogate in the string; beyond U+10FFFF (or "FFFFFFFF", read as -1) is an error.
        if (cp is >= 0xD800 and <= 0xDFFF) return ((char)cp).ToString();
        if (cp is < 0 or > 0x10FFFF) throw Error($"escape '\\{(digits == 8 ? 'U' : 'u')}{h}' is not a Unicode code point");
        return char.ConvertFromUtf32(cp);
    }
}
