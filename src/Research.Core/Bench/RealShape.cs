using System.Diagnostics;
using Research.Models;
using TorchSharp;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Bench;

/// <summary>
/// One measurement of a Qwen3-0.6B-shaped model with random weights, in a process of its own (its peak RSS is the kernel's
/// high-water mark, VmHWM): an SFT step (forward, backward, AdamW) or generation with the KV cache.
/// </summary>
/// <param name="Mode">full, full-chunked, lora, lora-chunked (an SFT step; chunked = the loss 512 rows at a time) or generate.</param>
/// <param name="Layers">Decoder layers (28 = the real shape; fewer in --quick, which says so).</param>
/// <param name="TokensPerS">Training tokens of the step / its seconds; for generate, new tokens / seconds.</param>
/// <param name="StateBytes">The bytes the mode implies: full = parameters + gradients + AdamW's two moments (16 bytes a parameter);
/// LoRA = the frozen parameters (4) + 16 per adapter parameter; generate = the parameters.</param>
public sealed record RealShapeResult(string Mode, int Layers, long Parameters, long TrainableParameters, int Batch, int Sequence,
    double Seconds, double TokensPerS, long RssAfterModelBytes, long PeakRssBytes, long StateBytes, string? Note = null)
{
    /// <summary>Peak RSS / the bytes the mode implies.</summary>
    public double PeakOverState => (double)PeakRssBytes / StateBytes;
}

public static class RealShape
{
    public static readonly string[] Modes = ["full", "full-chunked", "lora", "lora-chunked", "generate"];
    /// <summary>Every linear of a layer, rank 16, alpha 32.</summary>
    public static LoraOptions Lora => new() { Rank = 16, Alpha = 32, TargetModules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] };

    public static ModelConfig Config(int layers) => VocabMemory.Qwen3_0_6B with { NumHiddenLayers = layers };

    /// <param name="newTokens">generate: tokens generated after a 16-token prompt.</param>
    public static RealShapeResult Run(string mode, ModelConfig config, int batch, int sequence, Device device, int newTokens = 32)
    {
        if (!Modes.Contains(mode)) throw new ArgumentException($"real shape: mode must be one of {string.Join(", ", Modes)} (got '{mode}')");
        using var model = new CausalLM(config, seed: 1);
        model.to(device);
        var parameters = model.ParameterCount();
        var rssAfterModel = VocabMemory.Status("VmRSS");
        using var generator = new Generator(2);
        if (mode == "generate")
        {
            model.eval();
            var prompt = randint(config.VocabSize, [16], dtype: int64, generator: generator).data<long>().Select(x => (int)x).ToArray();
            var clock0 = Stopwatch.StartNew();
            var output = Generation.Generate(model, prompt, SamplingOptions.Greedy(newTokens));
            var seconds0 = clock0.Elapsed.TotalSeconds;
            var made = output.Length;                                                    // new tokens only (the prompt is not returned)
            return new RealShapeResult(mode, config.NumHiddenLayers, parameters, 0, 1, prompt.Length, seconds0, made / seconds0,
                rssAfterModel, VocabMemory.Status("VmHWM"), 4 * parameters, $"{made} new tokens after a {prompt.Length}-token prompt, greedy, KV cache");
        }
        model.train();
        using var adapter = mode.StartsWith("lora", StringComparison.Ordinal) ? LoraAdapter.Attach(model, Lora, 1) : null;
        var trainable = adapter?.NamedParameters().ToArray() ?? model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        var trainableCount = trainable.Sum(p => p.Item2.numel());
        var train = new TrainConfig { LearningRate = 1e-5 };
        var clock = Stopwatch.StartNew();
        using (var scope = NewDisposeScope())
        {
            using var optimizer = new AdamW(trainable);
            var input = randint(config.VocabSize, [batch, sequence], dtype: int64, generator: generator).to(device);
            var target = randint(config.VocabSize, [batch, sequence], dtype: int64, generator: generator).to(device);
            target.narrow(1, 0, sequence / 4).fill_(TokenLoss.IgnoreIndex);                  // the prompt: not trained
            using var chunking = LossChunking.Use(mode.EndsWith("chunked", StringComparison.Ordinal) ? LossChunking.DefaultRows : 0);
            optimizer.ZeroGrad();
            var loss = TokenLoss.SummedCrossEntropy(model, model.Embed(input), target) / (batch * (sequence - sequence / 4));
            loss.backward();
            optimizer.ClipGradNorm(1.0);
            optimizer.Step(train.LearningRate, train);
            loss.item<float>();
        }
        var seconds = clock.Elapsed.TotalSeconds;
        var state = adapter is null ? 16 * parameters : 4 * parameters + 16 * trainableCount;
        return new RealShapeResult(mode, config.NumHiddenLayers, parameters, trainableCount, batch, sequence, seconds, batch * sequence / seconds,
            rssAfterModel, VocabMemory.Status("VmHWM"), state, "one step, the first (optimizer state allocated in it)");
    }
}
