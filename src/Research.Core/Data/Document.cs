namespace Research.Data;

/// <summary>One training document: its text, the file it came from and the 1-based line where it starts.</summary>
public sealed record Document(string Text, string Source, int Line);
