namespace Research.Templates;

internal enum TokenKind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof }

/// <summary>One lexer token; <see cref="Value"/> is the text, the decoded string literal or the number.</summary>
internal sealed record Token(TokenKind Kind, string Text, object? Value, int Line)
{
    public bool IsOp(string op) => Kind == TokenKind.Op && Text == op;
    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;
    public override string ToString() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.VarEnd => "'}}'",
        TokenKind.BlockEnd => "'%}'",
        _ => $"'{Text}'",
    };
}
