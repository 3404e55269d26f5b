using Research.Templates;

namespace Research.Data;

/// <summary>
/// A model's own chat template (the Jinja <c>chat_template</c> of its tokenizer_config.json), rendered as transformers'
/// <c>apply_chat_template</c> does, with the loss mask derived from the rendering: for each trained assistant turn i,
/// the conversation up to it rendered with <c>add_generation_prompt</c> is the prompt P_i, the conversation through it
/// is S_i, and exactly the text S_i − P_i (the answer and the template's own end-of-turn marks) is trained. Every S_i
/// must be a prefix of the whole rendering (true of the usual templates); a template that rewrites earlier turns
/// (Qwen3 drops reasoning from past turns) is refused with the turn named rather than masked wrongly.
/// </summary>
public sealed class ModelChatTemplate
{
    readonly TokenizerChatConfig _config;

    public string Source { get; }

    public ModelChatTemplate(TokenizerChatConfig config, string source)
    {
        _config = config;
        Source = source;
    }

    /// <summary>The chat template of a Hugging Face tokenizer directory; the error names tokenizer_config.json when it has none.</summary>
    public static ModelChatTemplate Of(ITokenizer tokenizer)
    {
        if (tokenizer is not HfTokenizer hf)
            throw new TokenizerException($"template \"model\" needs a Hugging Face tokenizer with a chat_template; the {tokenizer.Name} tokenizer has none (use \"plain\" or \"chatml\")");
        var path = Path.Combine(hf.Directory, Tokenizers.ConfigFile);
        if (hf.ChatTemplate is null)
            throw new TokenizerException($"{path}: no chat_template; template \"model\" needs the model's own (or use \"plain\" or \"chatml\")");
        // The tokens as read at load (the template may come from chat_template.jinja, which tokenizer_config.json does not name).
        return new ModelChatTemplate(new TokenizerChatConfig(hf.ChatTemplate, new Dictionary<string, string>(hf.Config.TemplateTokens)), path);
    }

    /// <summary>The messages rendered as transformers' apply_chat_template(tokenize=False) writes them.</summary>
    public string RenderText(IEnumerable<ChatMessage> messages, bool addGenerationPrompt) =>
        ChatTemplateRenderer.RenderChat(_config,
            messages.Select(m => new Templates.ChatMessage(m.Role.ToString().ToLowerInvariant(), m.Content)).ToList(), addGenerationPrompt);

    /// <summary>The conversation as (text, trained) pieces whose concatenation is the whole rendering.</summary>
    public IReadOnlyList<(string Text, bool Trained)> Pieces(SftExample example)
    {
        var messages = example.Messages!;
        var whole = RenderText(messages, false);
        var pieces = new List<(string, bool)>();
        var done = 0;
        for (var i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role != ChatRole.Assistant || !messages[i].Trained) continue;
            var prompt = RenderText(messages.Take(i), true);
            var through = RenderText(messages.Take(i + 1), false);
            if (!through.StartsWith(prompt, StringComparison.Ordinal) || !whole.StartsWith(through, StringComparison.Ordinal) || prompt.Length < done)
                throw new CorpusException($"{example.Where}: {Source}'s chat_template does not render assistant turn {i + 1} as a continuation of the turns before it, so its loss mask cannot be derived from the rendering");
            pieces.Add((whole[done..prompt.Length], false));
            pieces.Add((whole[prompt.Length..through.Length], true));
            done = through.Length;
        }
        if (done < whole.Length) pieces.Add((whole[done..], false));
        return pieces.Where(p => p.Item1.Length > 0).ToList();
    }

    /// <summary>Ids and per-token train mask of the rendering (no BOS added: the template writes its own special tokens).</summary>
    public SftTokens Render(SftExample example, ITokenizer tokenizer)
    {
        if (!example.IsConversation)
        {
            var ids = new List<int>();
            var trained = new List<bool>();
            if (tokenizer is not HfTokenizer { AddsBos: false }) { ids.Add(tokenizer.BosId); trained.Add(false); }
            foreach (var id in tokenizer.Encode(example.Prompt!)) { ids.Add(id); trained.Add(false); }
            foreach (var id in tokenizer.Encode(example.Completion!)) { ids.Add(id); trained.Add(true); }
            ids.Add(tokenizer.EosId); trained.Add(true);
            return new SftTokens(ids.ToArray(), trained.ToArray());
        }
        var pieces = Pieces(example);
        if (tokenizer is HfTokenizer hf) return hf.EncodePieces(pieces);
        var all = pieces.SelectMany(p => tokenizer.Encode(p.Text).Select(id => (id, p.Trained))).ToArray();
        return new SftTokens(all.Select(a => a.id).ToArray(), all.Select(a => a.Trained).ToArray());
    }

    /// <summary>The ids up to the first trained answer (ending with the generation prompt) and that answer's text.</summary>
    public (int[] Prompt, string Answer) PromptAndAnswer(SftExample example, ITokenizer tokenizer)
    {
        if (!example.IsConversation)
        {
            var ids = new List<int>();
            if (tokenizer is not HfTokenizer { AddsBos: false }) ids.Add(tokenizer.BosId);
            ids.AddRange(tokenizer.Encode(example.Prompt!));
            return (ids.ToArray(), example.Completion!);
        }
        var messages = example.Messages!;
        for (var i = 0; i < messages.Count; i++)
            if (messages[i].Role == ChatRole.Assistant && messages[i].Trained)
                return (tokenizer.Encode(RenderText(messages.Take(i), true)), messages[i].Content);
        throw new CorpusException($"{example.Where}: no trained assistant turn to answer");
    }
}
