using System.Collections.Concurrent;
using System.Text.Json;

namespace Research.Templates;

/// <summary>The chat template and special tokens of a tokenizer_config.json.</summary>
public sealed record TokenizerChatConfig(string ChatTemplate, IReadOnlyDictionary<string, string> SpecialTokens)
{
    static readonly string[] SpecialTokenKeys =
        ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    /// <summary>Reads <c>chat_template</c> (a string, or a list of named templates of which "default"
    /// or the first is taken) and the special tokens (a string or an object with "content").</summary>
    public static TokenizerChatConfig FromJson(string tokenizerConfigJson)
    {
        using var doc = JsonDocument.Parse(tokenizerConfigJson);
        var root = doc.RootElement;
        if (!root.TryGetProperty("chat_template", out var t) || t.ValueKind == JsonValueKind.Null)
            throw new ArgumentException("tokenizer_config.json has no chat_template");
        string template = t.ValueKind switch
        {
            JsonValueKind.String => t.GetString()!,
            JsonValueKind.Array => (t.EnumerateArray().FirstOrDefault(e => e.TryGetProperty("name", out var n) && n.GetString() == "default") is { ValueKind: JsonValueKind.Object } d
                ? d : t.EnumerateArray().First()).GetProperty("template").GetString()!,
            _ => throw new ArgumentException("chat_template must be a string or a list of {name, template}"),
        };
        var tokens = new Dictionary<string, string>();
        foreach (var key in SpecialTokenKeys)
        {
            if (!root.TryGetProperty(key, out var v)) continue;
            string? s = v.ValueKind switch
            {
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString(),
                _ => null,
            };
            if (s is not null) tokens[key] = s;
        }
        return new TokenizerChatConfig(template, tokens);
    }
}

/// <summary>Renders a conversation the way transformers' <c>apply_chat_template(..., tokenize=False)</c>
/// does: the template sees <c>messages</c>, <c>add_generation_prompt</c>, <c>tools=None</c>,
/// <c>documents=None</c>, the special tokens that are set (a null <c>bos_token</c> stays undefined),
/// and any <c>extra</c> variables (e.g. <c>enable_thinking</c>, <c>date_string</c>, <c>tools</c>).</summary>
public static class ChatTemplateRenderer
{
    static readonly ConcurrentDictionary<string, JinjaTemplate> Cache = new();

    /// <summary>Parses (once per distinct source, like transformers' lru_cache) and renders.</summary>
    public static string RenderChat(string template, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt,
        string? bosToken, string? eosToken, IReadOnlyDictionary<string, object?>? extra = null)
    {
        var compiled = Cache.GetOrAdd(template, t => JinjaTemplate.Parse(t, "chat_template"));
        var tokens = new Dictionary<string, string>();
        if (bosToken is not null) tokens["bos_token"] = bosToken;
        if (eosToken is not null) tokens["eos_token"] = eosToken;
        return RenderChat(compiled, messages, addGenerationPrompt, tokens, extra);
    }

    /// <summary>Renders with a tokenizer_config.json's template and all its special tokens.</summary>
    public static string RenderChat(TokenizerChatConfig config, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt,
        IReadOnlyDictionary<string, object?>? extra = null)
    {
        var compiled = Cache.GetOrAdd(config.ChatTemplate, t => JinjaTemplate.Parse(t, "chat_template"));
        return RenderChat(compiled, messages, addGenerationPrompt, config.SpecialTokens, extra);
    }

    /// <summary>Renders an already parsed template; <paramref name="messages"/> may hold
    /// <see cref="ChatMessage"/>s or dictionaries (for tool calls and other fields).</summary>
    public static string RenderChat(JinjaTemplate template, IReadOnlyList<object> messages, bool addGenerationPrompt,
        IReadOnlyDictionary<string, string> specialTokens, IReadOnlyDictionary<string, object?>? extra = null)
    {
        var context = new Dictionary<string, object?>
        {
            ["messages"] = messages,
            ["tools"] = null,
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        foreach (var (k, v) in specialTokens) context[k] = v;
        if (extra is not null) foreach (var (k, v) in extra) context[k] = v;
        return template.Render(context);
    }
}
