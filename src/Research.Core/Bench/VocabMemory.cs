using System.Diagnostics;
using System.Text.Json.Nodes;
using TorchSharp;
using Research.Models;
using Research.Stages;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Bench;

/// <summary>One measurement of <see cref="VocabMemory.Step"/>: the process's resident memory after building the model
/// and its peak (VmHWM) over the step, in bytes.</summary>
public sealed record VocabMemoryResult(int ChunkRows, int Batch, int Sequence, long Vocab, long Parameters, double Loss,
    long RssAfterModelBytes, long PeakRssBytes, double StepSeconds);

/// <summary>
/// research bench --vocab-memory: peak resident memory of one SFT step (forward + backward of the summed token
/// cross-entropy, prompt targets masked; no optimizer step) of a randomly initialised Qwen3-0.6B-shaped model
/// (vocab 151,936), with the loss from full logits or chunked (<see cref="ChunkedLoss"/>). The peak is the kernel's
/// high-water mark of the process (VmHWM), so each setting has to run in a fresh process.
/// </summary>
public static class VocabMemory
{
    /// <summary>Qwen3-0.6B's shape: vocab 151,936, hidden 1024, intermediate 3072, 28 layers, 16 heads, 8 kv heads, head_dim 128, tied.</summary>
    public static ModelConfig Qwen3_0_6B => ModelConfig.FromJson(JsonNode.Parse("""
        {"model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
         "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960,
         "rope_theta": 1000000, "rms_norm_eps": 1e-6, "tie_word_embeddings": true}
        """)!.AsObject(), null);

    /// <param name="chunkRows">Rows per chunk of the loss; 0 = the plain full-logits loss.</param>
    public static VocabMemoryResult Step(int chunkRows, int batch, int sequence, Device device, ModelConfig? config = null)
    {
        config ??= Qwen3_0_6B;
        using var model = new CausalLM(config, seed: 1);
        model.to(device);
        model.train();
        var rssAfterModel = Status("VmRSS");
        using var scope = NewDisposeScope();
        using var generator = new Generator(2);
        var input = randint(config.VocabSize, [batch, sequence], dtype: int64, generator: generator).to(device);
        var target = randint(config.VocabSize, [batch, sequence], dtype: int64, generator: generator).to(device);
        target.narrow(1, 0, sequence / 4).fill_(TokenLoss.IgnoreIndex);                  // the prompt: not trained
        var clock = Stopwatch.StartNew();
        using var chunking = LossChunking.Use(chunkRows);
        var loss = TokenLoss.SummedCrossEntropy(model, model.Embed(input), target);
        loss.backward();
        var value = loss.item<float>();
        var seconds = clock.Elapsed.TotalSeconds;
        return new VocabMemoryResult(chunkRows, batch, sequence, config.VocabSize, model.ParameterCount(), value,
            rssAfterModel, Status("VmHWM"), seconds);
    }

    /// <summary>A "kB" line of /proc/self/status in bytes (VmRSS, VmHWM).</summary>
    public static long Status(string key)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
                return long.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0]) * 1024;
        throw new InvalidOperationException($"/proc/self/status has no {key} line");
    }
}
