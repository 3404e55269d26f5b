namespace Research.Templates;

/// <summary>Recursive-descent parser from tokens to the AST, following jinja2's grammar and operator
/// precedence: conditional, or, and, not, comparisons and <c>in</c>, <c>+ -</c>, <c>~</c>,
/// <c>* / // %</c>, <c>**</c>, unary minus, then postfix (attribute, subscript, call) and filters/tests.
/// Unknown filters, tests and statements are rejected here, naming the line.</summary>
internal sealed class Parser
{
    static readonly HashSet<string> UnsupportedStatements =
        ["include", "extends", "block", "import", "from", "call", "filter", "with", "autoescape", "do", "trans"];

    readonly List<Token> tokens;
    readonly string name;
    int index;

    Parser(List<Token> tokens, string name)
    {
        this.tokens = tokens;
        this.name = name;
    }

    public static IReadOnlyList<Node> Parse(List<Token> tokens, string name)
    {
        var parser = new Parser(tokens, name);
        var (body, end) = parser.ParseBody([]);
        if (end is not null) throw parser.Error(parser.Current, $"unexpected '{end}'");
        return body;
    }

    Token Current => tokens[index];
    Token Peek(int ahead = 1) => tokens[Math.Min(index + ahead, tokens.Count - 1)];
    Token Next() => tokens[index++];

    TemplateException Error(Token at, string detail) => new(name, at.Line, detail);

    Token Expect(TokenKind kind, string what)
    {
        if (Current.Kind != kind) throw Error(Current, $"expected {what}, got {Current}");
        return Next();
    }

    void ExpectOp(string op)
    {
        if (!Current.IsOp(op)) throw Error(Current, $"expected '{op}', got {Current}");
        index++;
    }

    void ExpectName(string keyword)
    {
        if (!Current.IsName(keyword)) throw Error(Current, $"expected '{keyword}', got {Current}");
        index++;
    }

    bool SkipOp(string op)
    {
        if (!Current.IsOp(op)) return false;
        index++;
        return true;
    }

    bool SkipName(string keyword)
    {
        if (!Current.IsName(keyword)) return false;
        index++;
        return true;
    }

    // ---- statements ----

    /// <summary>Parses nodes until a block tag whose name is in <paramref name="endTags"/> (consuming the
    /// tag's name, not the rest of it) or the end of the template; returns that tag's name or null.</summary>
    (List<Node> Body, string? End) ParseBody(IReadOnlyCollection<string> endTags)
    {
        var body = new List<Node>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.Eof:
                    if (endTags.Count > 0) throw Error(t, $"unexpected end of template, expected {string.Join(" or ", endTags.Select(e => $"'{e}'"))}");
                    return (body, null);
                case TokenKind.Text:
                    body.Add(new TextNode((string)t.Value!, t.Line));
                    index++;
                    break;
                case TokenKind.VarBegin:
                    index++;
                    var e = ParseTuple(true);
                    Expect(TokenKind.VarEnd, "'}}'");
                    body.Add(new OutputNode(e, t.Line));
                    break;
                case TokenKind.BlockBegin:
                    {
                        var tag = Peek();
                        if (tag.Kind != TokenKind.Name) throw Error(tag, $"expected a statement name, got {tag}");
                        if (endTags.Contains(tag.Text))
                        {
                            index += 2;
                            return (body, tag.Text);
                        }
                        index += 2;
                        body.Add(ParseStatement(tag));
                        break;
                    }
                default:
                    throw Error(t, $"unexpected {t}");
            }
        }
    }

    Node ParseStatement(Token tag)
    {
        switch (tag.Text)
        {
            case "if": return ParseIf(tag);
            case "for": return ParseFor(tag);
            case "set": return ParseSet(tag);
            case "macro": return ParseMacro(tag);
            case "generation":
                {
                    Expect(TokenKind.BlockEnd, "'%}'");
                    var (body, _) = ParseBody(["endgeneration"]);
                    Expect(TokenKind.BlockEnd, "'%}'");
                    return new GenerationNode(body, tag.Line);
                }
            case "break":
                Expect(TokenKind.BlockEnd, "'%}'");
                return new BreakNode(tag.Line);
            case "continue":
                Expect(TokenKind.BlockEnd, "'%}'");
                return new ContinueNode(tag.Line);
            default:
                if (UnsupportedStatements.Contains(tag.Text)) throw Error(tag, $"statement '{tag.Text}' is not supported");
                throw Error(tag, $"unknown statement '{tag.Text}'");
        }
    }

    Node ParseIf(Token tag)
    {
        var branches = new List<(Expr, IReadOnlyList<Node>)>();
        var test = ParseTuple(true);
        Expect(TokenKind.BlockEnd, "'%}'");
        while (true)
        {
            var (body, end) = ParseBody(["elif", "else", "endif"]);
            branches.Add((test, body));
            if (end == "elif")
            {
                test = ParseTuple(true);
                Expect(TokenKind.BlockEnd, "'%}'");
                continue;
            }
            Expect(TokenKind.BlockEnd, "'%}'");
            if (end == "endif") return new IfNode(branches, [], tag.Line);
            var (elseBody, _) = ParseBody(["endif"]);
            Expect(TokenKind.BlockEnd, "'%}'");
            return new IfNode(branches, elseBody, tag.Line);
        }
    }

    List<string> ParseTargets()
    {
        var targets = new List<string> { Expect(TokenKind.Name, "a variable name").Text };
        while (SkipOp(",")) targets.Add(Expect(TokenKind.Name, "a variable name").Text);
        return targets;
    }

    Node ParseFor(Token tag)
    {
        bool paren = SkipOp("(");
        var targets = ParseTargets();
        if (paren) ExpectOp(")");
        ExpectName("in");
        var iterable = ParseTuple(false);
        Expr? filter = SkipName("if") ? ParseExpression() : null;
        if (Current.IsName("recursive")) throw Error(Current, "recursive for loops are not supported");
        Expect(TokenKind.BlockEnd, "'%}'");
        var (body, end) = ParseBody(["else", "endfor"]);
        Expect(TokenKind.BlockEnd, "'%}'");
        IReadOnlyList<Node> elseBody = [];
        if (end == "else")
        {
            (elseBody, _) = ParseBody(["endfor"]);
            Expect(TokenKind.BlockEnd, "'%}'");
        }
        return new ForNode(targets, iterable, filter, body, elseBody, tag.Line);
    }

    Node ParseSet(Token tag)
    {
        var first = Expect(TokenKind.Name, "a variable name");
        if (SkipOp("."))
        {
            var attr = Expect(TokenKind.Name, "an attribute name");
            ExpectOp("=");
            var value = ParseTuple(true);
            Expect(TokenKind.BlockEnd, "'%}'");
            return new SetNode([first.Text], attr.Text, value, tag.Line);
        }
        var targets = new List<string> { first.Text };
        while (SkipOp(",")) targets.Add(Expect(TokenKind.Name, "a variable name").Text);
        if (SkipOp("="))
        {
            var value = ParseTuple(true);
            Expect(TokenKind.BlockEnd, "'%}'");
            return new SetNode(targets, null, value, tag.Line);
        }
        if (targets.Count != 1) throw Error(Current, "expected '='");
        if (Current.IsOp("|")) throw Error(Current, "filtered block 'set' is not supported");
        Expect(TokenKind.BlockEnd, "'%}' or '='");
        var (body, _) = ParseBody(["endset"]);
        Expect(TokenKind.BlockEnd, "'%}'");
        return new SetBlockNode(first.Text, body, tag.Line);
    }

    Node ParseMacro(Token tag)
    {
        var macroName = Expect(TokenKind.Name, "a macro name").Text;
        ExpectOp("(");
        var parameters = new List<(string, Expr?)>();
        while (!Current.IsOp(")"))
        {
            if (parameters.Count > 0) ExpectOp(",");
            if (Current.IsOp(")")) break;
            var p = Expect(TokenKind.Name, "a parameter name").Text;
            Expr? def = SkipOp("=") ? ParseExpression() : null;
            parameters.Add((p, def));
        }
        ExpectOp(")");
        Expect(TokenKind.BlockEnd, "'%}'");
        var (body, _) = ParseBody(["endmacro"]);
        if (Current.Kind == TokenKind.Name && Current.Text == macroName) index++;
        Expect(TokenKind.BlockEnd, "'%}'");
        return new MacroNode(macroName, parameters, body, tag.Line);
    }

    // ---- expressions ----

    bool AtExpressionEnd => Current.Kind is TokenKind.VarEnd or TokenKind.BlockEnd or TokenKind.Eof
        || Current.IsOp(")") || Current.IsOp("]") || Current.IsOp("}");

    /// <summary>An expression, or a comma-separated tuple of them (<c>{{ a, b }}</c>, <c>set x = 1, 2</c>).</summary>
    Expr ParseTuple(bool withCondExpr)
    {
        int line = Current.Line;
        var first = withCondExpr ? ParseExpression() : ParseOr();
        if (!Current.IsOp(",")) return first;
        var items = new List<Expr> { first };
        while (SkipOp(","))
        {
            if (AtExpressionEnd || Current.IsName("if")) break;
            items.Add(withCondExpr ? ParseExpression() : ParseOr());
        }
        return new TupleExpr(items, line);
    }

    Expr ParseExpression()
    {
        var expr = ParseOr();
        while (Current.IsName("if"))
        {
            int line = Current.Line;
            index++;
            var test = ParseOr();
            Expr? otherwise = SkipName("else") ? ParseExpression() : null;
            expr = new CondExpr(test, expr, otherwise, line);
        }
        return expr;
    }

    Expr ParseOr()
    {
        var left = ParseAnd();
        while (Current.IsName("or"))
        {
            int line = Next().Line;
            left = new BinaryExpr("or", left, ParseAnd(), line);
        }
        return left;
    }

    Expr ParseAnd()
    {
        var left = ParseNot();
        while (Current.IsName("and"))
        {
            int line = Next().Line;
            left = new BinaryExpr("and", left, ParseNot(), line);
        }
        return left;
    }

    Expr ParseNot()
    {
        if (Current.IsName("not"))
        {
            int line = Next().Line;
            return new UnaryExpr("not", ParseNot(), line);
        }
        return ParseCompare();
    }

    Expr ParseCompare()
    {
        int line = Current.Line;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            var t = Current;
            if (t.Kind == TokenKind.Op && t.Text is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                index++;
                rest.Add((t.Text, ParseMath1()));
            }
            else if (t.IsName("in"))
            {
                index++;
                rest.Add(("in", ParseMath1()));
            }
            else if (t.IsName("not") && Peek().IsName("in"))
            {
                index += 2;
                rest.Add(("not in", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first, rest, line);
    }

    Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Current.IsOp("+") || Current.IsOp("-"))
        {
            var op = Next();
            left = new BinaryExpr(op.Text, left, ParseConcat(), op.Line);
        }
        return left;
    }

    Expr ParseConcat()
    {
        var left = ParseMath2();
        while (Current.IsOp("~"))
        {
            var op = Next();
            left = new BinaryExpr("~", left, ParseMath2(), op.Line);
        }
        return left;
    }

    Expr ParseMath2()
    {
        var left = ParsePow();
        while (Current.Kind == TokenKind.Op && Current.Text is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new BinaryExpr(op.Text, left, ParsePow(), op.Line);
        }
        return left;
    }

    Expr ParsePow()
    {
        var left = ParseUnary(true);
        while (Current.IsOp("**"))
        {
            var op = Next();
            left = new BinaryExpr("**", left, ParseUnary(true), op.Line);
        }
        return left;
    }

    Expr ParseUnary(bool withFilter)
    {
        var t = Current;
        Expr node;
        if (t.IsOp("-") || t.IsOp("+"))
        {
            index++;
            node = new UnaryExpr(t.Text, ParseUnary(false), t.Line);
        }
        else node = ParsePrimary();
        node = ParsePostfix(node);
        return withFilter ? ParseFilterExpr(node) : node;
    }

    Expr ParsePrimary()
    {
        var t = Current;
        switch (t.Kind)
        {
            case TokenKind.Name:
                index++;
                return t.Text switch
                {
                    "true" or "True" => new LiteralExpr(true, t.Line),
                    "false" or "False" => new LiteralExpr(false, t.Line),
                    "none" or "None" => new LiteralExpr(null, t.Line),
                    _ => new NameExpr(t.Text, t.Line),
                };
            case TokenKind.String:
                {
                    index++;
                    var s = (string)t.Value!;
                    while (Current.Kind == TokenKind.String) s += (string)Next().Value!;
                    return new LiteralExpr(s, t.Line);
                }
            case TokenKind.Int:
            case TokenKind.Float:
                index++;
                return new LiteralExpr(t.Value, t.Line);
            case TokenKind.Op when t.Text == "(":
                {
                    index++;
                    if (SkipOp(")")) return new TupleExpr([], t.Line);
                    var inner = ParseExpression();
                    if (Current.IsOp(","))
                    {
                        var items = new List<Expr> { inner };
                        while (SkipOp(","))
                        {
                            if (Current.IsOp(")")) break;
                            items.Add(ParseExpression());
                        }
                        inner = new TupleExpr(items, t.Line);
                    }
                    ExpectOp(")");
                    return inner;
                }
            case TokenKind.Op when t.Text == "[":
                {
                    index++;
                    var items = new List<Expr>();
                    while (!Current.IsOp("]"))
                    {
                        if (items.Count > 0) ExpectOp(",");
                        if (Current.IsOp("]")) break;
                        items.Add(ParseExpression());
                    }
                    ExpectOp("]");
                    return new ListExpr(items, t.Line);
                }
            case TokenKind.Op when t.Text == "{":
                {
                    index++;
                    var items = new List<(Expr, Expr)>();
                    while (!Current.IsOp("}"))
                    {
                        if (items.Count > 0) ExpectOp(",");
                        if (Current.IsOp("}")) break;
                        var key = ParseExpression();
                        ExpectOp(":");
                        items.Add((key, ParseExpression()));
                    }
                    ExpectOp("}");
                    return new DictExpr(items, t.Line);
                }
            default:
                throw Error(t, $"unexpected {t} in an expression");
        }
    }

    Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOp("."))
            {
                index++;
                var attr = Current;
                if (attr.Kind == TokenKind.Name) { index++; node = new AttrExpr(node, attr.Text, t.Line); }
                else if (attr.Kind == TokenKind.Int) { index++; node = new ItemExpr(node, new LiteralExpr(attr.Value, t.Line), t.Line); }
                else throw Error(attr, $"expected an attribute name after '.', got {attr}");
            }
            else if (t.IsOp("["))
            {
                index++;
                node = new ItemExpr(node, ParseSubscript(t.Line), t.Line);
                ExpectOp("]");
            }
            else if (t.IsOp("("))
            {
                index++;
                node = new CallExpr(node, ParseCallArgs(), t.Line);
            }
            else return node;
        }
    }

    Expr ParseSubscript(int line)
    {
        Expr? start = null;
        if (!Current.IsOp(":"))
        {
            start = ParseExpression();
            if (!Current.IsOp(":")) return start;
        }
        index++; // ':'
        Expr? stop = Current.IsOp("]") || Current.IsOp(":") ? null : ParseExpression();
        Expr? step = null;
        if (SkipOp(":") && !Current.IsOp("]")) step = ParseExpression();
        return new SliceExpr(start, stop, step, line);
    }

    /// <summary>Arguments after an opening '(' up to and including the closing ')'.</summary>
    CallArgs ParseCallArgs()
    {
        var positional = new List<Expr>();
        var keyword = new List<(string, Expr)>();
        while (!Current.IsOp(")"))
        {
            if (positional.Count + keyword.Count > 0) ExpectOp(",");
            if (Current.IsOp(")")) break;
            if (Current.IsOp("*") || Current.IsOp("**")) throw Error(Current, "*args and **kwargs in calls are not supported");
            if (Current.Kind == TokenKind.Name && Peek().IsOp("="))
            {
                var k = Next().Text;
                index++;
                keyword.Add((k, ParseExpression()));
            }
            else
            {
                if (keyword.Count > 0) throw Error(Current, "positional argument follows keyword argument");
                positional.Add(ParseExpression());
            }
        }
        ExpectOp(")");
        return new CallArgs(positional, keyword);
    }

    Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOp("|"))
            {
                index++;
                var f = Expect(TokenKind.Name, "a filter name");
                var filterName = f.Text;
                while (Current.IsOp(".") && Peek().Kind == TokenKind.Name) { index++; filterName += "." + Next().Text; }
                if (!Filters.IsKnown(filterName)) throw Error(f, $"filter '{filterName}' is not supported");
                var args = SkipOp("(") ? ParseCallArgs() : new CallArgs([], []);
                node = new FilterExpr(node, filterName, args, f.Line);
            }
            else if (t.IsName("is"))
            {
                index++;
                bool negated = SkipName("not");
                var n = Current;
                string testName;
                if (n.Kind == TokenKind.Name) testName = n.Text;
                else if (n.Kind == TokenKind.Op && n.Text is "==" or "!=" or "<" or "<=" or ">" or ">=") testName = n.Text;
                else throw Error(n, $"expected a test name after 'is', got {n}");
                index++;
                if (testName is "none" or "true" or "false" or "None" or "True" or "False") testName = testName.ToLowerInvariant();
                if (!IsTests.IsKnown(testName)) throw Error(n, $"test '{testName}' is not supported");
                CallArgs args;
                if (SkipOp("(")) args = ParseCallArgs();
                else if (StartsBareTestArgument()) args = new CallArgs([ParsePostfix(ParsePrimary())], []);
                else args = new CallArgs([], []);
                node = new TestExpr(node, testName, args, negated, n.Line);
            }
            else if (t.IsOp("("))
            {
                index++;
                node = new CallExpr(node, ParseCallArgs(), t.Line);
            }
            else return node;
        }
    }

    bool StartsBareTestArgument()
    {
        var t = Current;
        if (t.Kind is TokenKind.String or TokenKind.Int or TokenKind.Float) return true;
        if (t.Kind == TokenKind.Op) return t.Text is "[" or "{";
        return t.Kind == TokenKind.Name && t.Text is not ("else" or "or" or "and" or "if" or "is" or "in" or "not");
    }
}
