using System.Text.Json;
using Research.Eval;
using System.Text.Json.Nodes;
using Research.Data;
using Research.Models;

namespace Research.Pipelines;

/// <summary>What <c>research inspect</c>, <c>generate</c> and <c>eval</c> compute on any checkpoint directory of a supported
/// family, as JSON objects (the CLI prints them; scripts and notebooks may call these directly).</summary>
public static class CheckpointTools
{
    /// <summary>Family, parameters, dtype, vocabulary, special tokens and chat template presence.</summary>
    public static JsonObject Inspect(string dir)
    {
        var config = ModelConfig.Load(Path.Combine(dir, Checkpoint.ConfigFile));
        using var model = new CausalLM(config);
        var info = new JsonObject
        {
            ["directory"] = Path.GetFullPath(dir),
            ["model_type"] = config.ModelType,
            ["architecture"] = config.Architectures.FirstOrDefault(),
            ["parameters"] = model.ParameterCount(),
            ["dtype"] = config.TorchDtype,
            ["layers"] = config.NumHiddenLayers, ["hidden_size"] = config.HiddenSize, ["heads"] = config.NumAttentionHeads,
            ["kv_heads"] = config.NumKeyValueHeads, ["head_dim"] = config.HeadDim,
            ["vocab_size"] = config.VocabSize, ["max_position_embeddings"] = config.MaxPositionEmbeddings,
            ["tied_embeddings"] = config.TieWordEmbeddings,
            ["rope_scaling"] = config.RopeScaling?.Type,
            ["sliding_window"] = config.SlidingWindow is { } w && Enumerable.Range(0, config.NumHiddenLayers).Any(config.IsSlidingLayer) ? w : null,
            ["sharded"] = File.Exists(Path.Combine(dir, Safetensors.IndexFileName)),
        };
        var hasTokenizer = File.Exists(Path.Combine(dir, Tokenizers.ConfigFile)) || File.Exists(Path.Combine(dir, Tokenizers.JsonFile));
        if (hasTokenizer)
        {
            var tok = Tokenizers.Load(dir);
            info["tokenizer"] = tok.Name;
            info["tokenizer_vocab"] = tok.VocabSize;
            info["bos"] = Special(tok, tok.BosId);
            info["eos"] = Special(tok, tok.EosId);
            info["pad"] = Special(tok, tok.PadId);
            info["chat_template"] = tok is HfTokenizer { ChatTemplate: not null };
        }
        else info["tokenizer"] = null;
        return info;
    }

    static JsonNode? Special(ITokenizer tok, int id) =>
        id < 0 ? null : new JsonObject { ["id"] = id, ["text"] = SafeDecode(tok, id) };

    static string SafeDecode(ITokenizer tok, int id)
    {
        try { return tok is HfTokenizer hf ? hf.DecodeWithSpecial([id]) : tok.Decode([id]); } catch (Exception) { return "?"; }
    }

    /// <summary>Greedy or sampled continuation with a KV cache, stopping at any eos id; the prompt rendered through the
    /// model's chat template when <paramref name="chat"/>.</summary>
    public static JsonObject Generate(string dir, string prompt, bool chat, string? system, SamplingOptions sampling)
    {
        var (model, tokenizer) = Checkpoint.Load(dir);
        using (model)
        {
            var ids = chat ? ChatPrompt(tokenizer, prompt, system) : PlainPrompt(tokenizer, prompt);
            var options = sampling with
            {
                MaxNewTokens = Math.Min(sampling.MaxNewTokens, model.Config.MaxPositionEmbeddings - ids.Length),
                StopTokens = StopIds(dir, model.Config, tokenizer),
            };
            if (options.MaxNewTokens <= 0)
                throw new ArgumentException($"the prompt's {ids.Length} tokens leave no room under max_position_embeddings {model.Config.MaxPositionEmbeddings}");
            var started = DateTime.UtcNow;
            var output = Generation.Generate(model, ids, options);
            var seconds = (DateTime.UtcNow - started).TotalSeconds;
            var stopped = output.Length > 0 && options.Stops(output[^1]);
            return new JsonObject
            {
                ["prompt_tokens"] = ids.Length, ["new_tokens"] = output.Length, ["stopped_at_eos"] = stopped,
                ["text"] = tokenizer.Decode(stopped ? output[..^1] : output), ["ids"] = new JsonArray(output.Select(i => (JsonNode)i).ToArray()),
                ["seconds"] = Math.Round(seconds, 3),
            };
        }
    }

    static int[] PlainPrompt(ITokenizer tokenizer, string prompt) =>
        tokenizer is HfTokenizer hf ? hf.EncodeWithSpecial(prompt) : [tokenizer.BosId, .. tokenizer.Encode(prompt)];

    static int[] ChatPrompt(ITokenizer tokenizer, string prompt, string? system)
    {
        var messages = new List<ChatMessage>();
        if (system is not null) messages.Add(new(ChatRole.System, system, false));
        messages.Add(new(ChatRole.User, prompt, false));
        // The template writes the special tokens itself (apply_chat_template encodes without adding any).
        return tokenizer.Encode(ModelChatTemplate.Of(tokenizer).RenderText(messages, addGenerationPrompt: true));
    }

    /// <summary>generation_config.json, which must hold a JSON object.</summary>
    static JsonObject GenerationConfig(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: expected a JSON object");
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: malformed JSON ({e.Message})", e); }
    }

    /// <summary>eos ids from generation_config.json (int or list), config.json and the tokenizer.</summary>
    static int[] StopIds(string dir, ModelConfig config, ITokenizer tokenizer)
    {
        var ids = new SortedSet<int>();
        var gen = Path.Combine(dir, Checkpoint.GenerationConfigFile);
        if (File.Exists(gen) && GenerationConfig(gen)["eos_token_id"] is { } e)
        {
            try
            {
                if (e is JsonArray arr) foreach (var x in arr) ids.Add((x ?? throw new FormatException("null")).GetValue<int>());
                else ids.Add(e.GetValue<int>());
            }
            catch (Exception x) when (x is InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{gen}: eos_token_id must be an integer or a list of integers, got {e.ToJsonString()}", x);
            }
        }
        if (config.EosTokenId is { } c) ids.Add(c);
        if (tokenizer is HfTokenizer hf) foreach (var id in hf.EosIds) ids.Add(id);
        else if (tokenizer.EosId >= 0) ids.Add(tokenizer.EosId);
        return ids.ToArray();
    }

    /// <summary>The world's capability suites on one model: {suite: {metric: value}}, plus the template the prompts used.</summary>
    public static JsonObject Capabilities(CausalLM model, ITokenizer tokenizer, int size, int seed, int fewShot = 0, int batchSize = 4)
    {
        var world = new Data.Synthetic.World(size, seed);
        var files = world.Write(Path.Combine(Path.GetTempPath(), "research-world", $"size{size}-seed{seed}"));
        var general = Pipelines.DataSource.FromDocuments("general", () => world.General);
        var template = tokenizer is HfTokenizer { ChatTemplate: not null } ? "model" : "plain";
        var result = new JsonObject { ["world"] = files.Directory, ["template"] = template };
        foreach (var suite in Pipelines.Capability.Suites(files, general, seed, fewShot, Math.Max(1, batchSize), template))
        {
            var metrics = suite is Pipelines.IReferenceSuite r ? r.Evaluate(model, tokenizer, null) : suite.Evaluate(model, tokenizer);
            var o = new JsonObject();
            foreach (var (k, v) in metrics) o[k] = v;
            result[suite.Name] = o;
        }
        return result;
    }

    /// <summary>
    /// Perplexity and bits per byte on a text or JSONL corpus; multiple-choice accuracy from a JSONL file; with
    /// <paramref name="capabilities"/>, the six capability suites of the embedded world of that (size, seed) (written once to
    /// the temp folder), generation prompts rendered by the model's own chat template when it has one, else "plain".
    /// </summary>
    public static JsonObject Evaluate(string dir, string? textPath, string? mcPath, int fewShot = 0, int? maxLength = null, int batchSize = 4,
        (int Size, int Seed)? capabilities = null)
    {
        var (model, tokenizer) = Checkpoint.Load(dir);
        var result = new JsonObject { ["checkpoint"] = Path.GetFullPath(dir) };
        using (model)
        {
            var max = maxLength ?? Math.Min(model.Config.MaxPositionEmbeddings, 2048);
            if (textPath is not null)
            {
                var corpus = Corpus.Load(textPath);
                var ppl = Perplexity.Evaluate(model, tokenizer, corpus.Documents, corpus.Name, max, batchSize);
                result["text"] = new JsonObject
                {
                    ["file"] = Path.GetFullPath(textPath), ["documents"] = corpus.Documents.Count, ["tokens"] = ppl.Tokens, ["bytes"] = ppl.Bytes,
                    ["perplexity"] = ppl.Perplexity, ["bits_per_byte"] = ppl.BitsPerByte, ["word_perplexity"] = ppl.WordPerplexity,
                };
            }
            if (mcPath is not null)
            {
                var items = McData.Read(mcPath);
                var mc = McScoring.Evaluate(model, tokenizer, items, new McOptions { FewShot = fewShot, BatchSize = batchSize }, items);
                result["mc"] = new JsonObject { ["file"] = Path.GetFullPath(mcPath), ["items"] = mc.Count, ["acc"] = mc.Acc, ["acc_norm"] = mc.AccNorm };
            }
            if (capabilities is { } world)
                result["capabilities"] = Capabilities(model, tokenizer, world.Size, world.Seed, fewShot, batchSize);
        }
        return result;
    }
}
