using static TorchSharp.torch;

namespace Research.Models;

/// <summary>How to pick the next token. Temperature 0 = greedy; top-k 0 and top-p 1 switch those filters off.</summary>
public sealed record SamplingOptions
{
    public int MaxNewTokens { get; init; } = 64;
    public double Temperature { get; init; }
    public int TopK { get; init; }
    public double TopP { get; init; } = 1.0;
    /// <summary>Seed of this generation's own random stream (independent of the global torch seed).</summary>
    public long Seed { get; init; }
    /// <summary>Stop after emitting this token (usually EOS); null = run to MaxNewTokens.</summary>
    public int? StopToken { get; init; }
    /// <summary>Further stop tokens (a chat model's end-of-turn ids from generation_config.json); any of these or <see cref="StopToken"/> stops.</summary>
    public IReadOnlyList<int> StopTokens { get; init; } = [];

    public bool Stops(int token) => token == StopToken || StopTokens.Contains(token);

    public static SamplingOptions Greedy(int maxNewTokens) => new() { MaxNewTokens = maxNewTokens };
}

/// <summary>Autoregressive generation with a KV cache: the prompt is read once, then one token per step.</summary>
public static class Generation
{
    /// <summary>New token ids (prompt excluded) for one prompt.</summary>
    public static int[] Generate(CausalLM model, IReadOnlyList<int> prompt, SamplingOptions options)
    {
        if (prompt.Count == 0) throw new ArgumentException("prompt is empty: give at least one token (e.g. BOS)", nameof(prompt));
        var device = model.EmbeddingWeight.device;
        var capacity = Math.Min(model.Config.MaxPositionEmbeddings, prompt.Count + options.MaxNewTokens);
        if (prompt.Count >= capacity && options.MaxNewTokens > 0)
            throw new ArgumentException($"prompt of {prompt.Count} tokens leaves no room under max_position_embeddings {model.Config.MaxPositionEmbeddings}");
        var wasTraining = model.training;
        model.eval();
        using var noGrad = no_grad();
        using var generator = new Generator((ulong)options.Seed, device);
        using var cache = new KvCache(model.Config, 1, capacity, model.EmbeddingWeight.dtype, device);
        var output = new List<int>();
        var next = prompt.Select(t => (long)t).ToArray();
        try
        {
            while (output.Count < options.MaxNewTokens && cache.Length + next.Length <= capacity)
            {
                using var scope = NewDisposeScope();
                var ids = tensor(next, dtype: int64, device: device).unsqueeze(0);        // (1, t)
                var logits = model.Forward(ids, cache: cache)[0, -1];                      // (V)
                var token = (int)Pick(logits, options, generator);
                output.Add(token);
                if (options.Stops(token)) break;
                next = [token];
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return output.ToArray();
    }

    /// <summary>Same result as <see cref="Generate"/> for greedy decoding, recomputing the whole prefix each step (no cache): the reference the cache is tested against.</summary>
    public static int[] GenerateWithoutCache(CausalLM model, IReadOnlyList<int> prompt, SamplingOptions options)
    {
        var device = model.EmbeddingWeight.device;
        model.eval();
        using var noGrad = no_grad();
        using var generator = new Generator((ulong)options.Seed, device);
        var seq = prompt.Select(t => (long)t).ToList();
        var output = new List<int>();
        while (output.Count < options.MaxNewTokens && seq.Count < model.Config.MaxPositionEmbeddings)
        {
            using var scope = NewDisposeScope();
            var logits = model.Forward(tensor(seq.ToArray(), dtype: int64, device: device).unsqueeze(0))[0, -1];
            var token = (int)Pick(logits, options, generator);
            output.Add(token);
            if (options.Stops(token)) break;
            seq.Add(token);
        }
        return output.ToArray();
    }

    /// <summary>Greedy argmax, or a sample from the temperature-scaled distribution after top-k and top-p filtering.</summary>
    public static long Pick(Tensor logits, SamplingOptions o, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        if (o.Temperature <= 0) return logits.argmax().item<long>();
        var filtered = Filter(logits.to(float32) / o.Temperature, o.TopK, o.TopP);
        return multinomial(filtered.softmax(-1), 1, generator: generator).item<long>();
    }

    /// <summary>Logits (V) with everything outside top-k and outside the top-p nucleus set to -inf.</summary>
    public static Tensor Filter(Tensor logits, int topK, double topP)
    {
        using var scope = NewDisposeScope();
        var x = logits.clone();
        if (topK > 0 && topK < x.shape[0])
        {
            var kth = x.topk(topK).values[-1];
            x = x.masked_fill(x < kth, double.NegativeInfinity);
        }
        if (topP < 1.0)
        {
            var (sorted, order) = x.sort(descending: true);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            var remove = (cumulative - sorted.softmax(-1)) >= topP;                  // keep the smallest prefix reaching top-p
            var removeOriginal = zeros_like(remove).scatter(0, order, remove);
            x = x.masked_fill(removeOriginal, double.NegativeInfinity);
        }
        return x.MoveToOuterDisposeScope();
    }
}
