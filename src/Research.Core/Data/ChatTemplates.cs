namespace Research.Data;

/// <summary>Token ids of a rendered example and, per token, whether the model learns to produce it.</summary>
public sealed record SftTokens(int[] Ids, bool[] Trained)
{
    public int Length => Ids.Length;
    /// <summary>Tokens learned from as next-token targets (a trained first token has no predecessor and is not).</summary>
    public int TrainedTargets => Trained.Skip(1).Count(t => t);
}

/// <summary>How one role's turn is written: <c>Prefix + content + Suffix</c>, then (assistant only) the tokenizer's EOS, then <c>After</c>.</summary>
public sealed record TurnFormat(string Prefix, string Suffix, string After = "");

/// <summary>
/// A chat template as plain strings (no template language). Rendering starts with the tokenizer's BOS and writes each
/// turn as <c>Prefix content Suffix [EOS] After</c>. For a trained assistant turn the content, the Suffix and the
/// EOS token are trained (the model learns to end its turn); the Prefix (the role header) and After are not;
/// every other turn is context only. Each piece is encoded on its own, so the trained span is exact at token level.
/// A plain prompt/completion example is not templated: <c>BOS prompt completion EOS</c>, completion and EOS trained.
/// </summary>
public sealed record ChatTemplate(string Name, TurnFormat System, TurnFormat User, TurnFormat Assistant)
{
    /// <summary>Set for "model": the model's own Jinja chat_template renders, and the mask comes from the rendering.</summary>
    public ModelChatTemplate? Model { get; init; }

    /// <summary>What is written before the model's answer at generation time (the assistant's header).</summary>
    public string GenerationPrompt => Assistant.Prefix;

    public TurnFormat For(ChatRole role) => role switch { ChatRole.System => System, ChatRole.User => User, _ => Assistant };

    /// <summary>The example's ids and per-token train mask.</summary>
    public SftTokens Render(SftExample example, ITokenizer tokenizer)
    {
        if (Model is not null) return Model.Render(example, tokenizer);
        var ids = new List<int> { tokenizer.BosId };
        var trained = new List<bool> { false };
        void Add(string text, bool train) { foreach (var id in tokenizer.Encode(text)) { ids.Add(id); trained.Add(train); } }
        if (!example.IsConversation)
        {
            Add(example.Prompt!, false);
            Add(example.Completion!, true);
            ids.Add(tokenizer.EosId); trained.Add(true);
            return new SftTokens(ids.ToArray(), trained.ToArray());
        }
        foreach (var m in example.Messages!)
        {
            var f = For(m.Role);
            var train = m.Role == ChatRole.Assistant && m.Trained;
            Add(f.Prefix, false);
            Add(m.Content, train);
            Add(f.Suffix, train);
            if (m.Role == ChatRole.Assistant) { ids.Add(tokenizer.EosId); trained.Add(train); }
            Add(f.After, false);
        }
        return new SftTokens(ids.ToArray(), trained.ToArray());
    }

    /// <summary>
    /// For generation-based evaluation: the ids up to the first trained answer (ending with the assistant header
    /// for a conversation) and that answer's text (without the end-of-turn marks).
    /// </summary>
    public (int[] Prompt, string Answer) PromptAndAnswer(SftExample example, ITokenizer tokenizer)
    {
        if (Model is not null) return Model.PromptAndAnswer(example, tokenizer);
        var ids = new List<int> { tokenizer.BosId };
        if (!example.IsConversation)
        {
            ids.AddRange(tokenizer.Encode(example.Prompt!));
            return (ids.ToArray(), example.Completion!);
        }
        foreach (var m in example.Messages!)
        {
            var f = For(m.Role);
            ids.AddRange(tokenizer.Encode(f.Prefix));
            if (m.Role == ChatRole.Assistant && m.Trained) return (ids.ToArray(), m.Content);
            ids.AddRange(tokenizer.Encode(m.Content + f.Suffix));
            if (m.Role == ChatRole.Assistant) ids.Add(tokenizer.EosId);
            ids.AddRange(tokenizer.Encode(f.After));
        }
        throw new CorpusException($"{example.Where}: no trained assistant turn to answer");
    }
}

/// <summary>The built-in templates, by name.</summary>
public static class ChatTemplates
{
    /// <summary>
    /// "plain", for tiny byte-level models (no special tokens beyond BOS/EOS):
    /// <code>
    /// &lt;BOS&gt;&lt;|system|&gt;\n{system}\n&lt;|user|&gt;\n{user}\n&lt;|assistant|&gt;\n{assistant}&lt;EOS&gt;&lt;|user|&gt;\n...
    /// </code>
    /// Trained: {assistant} and its &lt;EOS&gt;.
    /// </summary>
    public static ChatTemplate Plain { get; } = new("plain",
        new TurnFormat("<|system|>\n", "\n"),
        new TurnFormat("<|user|>\n", "\n"),
        new TurnFormat("<|assistant|>\n", ""));

    /// <summary>
    /// "chatml" (OpenAI ChatML, as Qwen writes it):
    /// <code>
    /// &lt;BOS&gt;&lt;|im_start|&gt;system\n{system}&lt;|im_end|&gt;\n&lt;|im_start|&gt;user\n{user}&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n{assistant}&lt;|im_end|&gt;&lt;EOS&gt;\n
    /// </code>
    /// Trained: {assistant}&lt;|im_end|&gt;&lt;EOS&gt;. The markers are text for tokenizers that lack them as
    /// special tokens (byte, gpt2); the tokenizer's EOS after &lt;|im_end|&gt; is what stops generation.
    /// </summary>
    public static ChatTemplate ChatML { get; } = new("chatml",
        new TurnFormat("<|im_start|>system\n", "<|im_end|>\n"),
        new TurnFormat("<|im_start|>user\n", "<|im_end|>\n"),
        new TurnFormat("<|im_start|>assistant\n", "<|im_end|>", "\n"));

    public static IReadOnlyList<ChatTemplate> All { get; } = [Plain, ChatML];

    /// <summary>"model": the tokenizer's own chat_template (a Hugging Face model's); else a built-in one by name.</summary>
    public static ChatTemplate Resolve(string name, ITokenizer tokenizer) =>
        name == "model" ? Plain with { Name = "model", Model = ModelChatTemplate.Of(tokenizer) } : ByName(name);

    public static ChatTemplate ByName(string name) =>
        All.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"unknown chat template \"{name}\" (known: {string.Join(", ", All.Select(t => t.Name))}, or \"model\" for a Hugging Face model's own)");
}
