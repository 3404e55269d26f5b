namespace Research.Data;

/// <summary>One entry of tokenizer.json's "added_tokens": matched in text before the model sees it, as a single id.</summary>
public sealed record HfAddedToken(int Id, string Content, bool Special);
