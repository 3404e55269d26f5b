namespace Research.Templates;

/// <summary>One chat turn as chat templates see it: <c>{"role": ..., "content": ...}</c>.</summary>
public sealed record ChatMessage(string Role, string Content);
