using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>Which family of preference objective an align stage trains.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<AlignMode>))]
public enum AlignMode
{
    /// <summary>Reference-based pairwise losses (DPO, IPO, LN-DPO, ...): <see cref="PreferenceOptions.Losses"/>.</summary>
    Paired,
    /// <summary>SimPO, reference-free (the reference log-probs serve only the diagnostics).</summary>
    SimPO,
    /// <summary>ORPO, reference-free (idem).</summary>
    Orpo,
    /// <summary>KTO on unpaired examples; paired data is unpaired (chosen desirable, rejected undesirable).</summary>
    Kto,
    /// <summary>Point-wise DPO (ULMA) on labels in [0, 1]; paired data gives labels 1 and 0.</summary>
    Pointwise,
}

/// <summary>align: preference optimisation from the parent checkpoint on JSONL preference data (<see cref="PreferenceData"/>).</summary>
public sealed record AlignOptions : IReadsFiles
{
    public string FilesFingerprint() => DataPath is { } path ? SftData.FileFingerprint(path) : "";

    /// <summary>Losses, beta (0.1), label smoothing, SimPO gamma, ORPO lambda, KTO weights (TRL defaults).</summary>
    public PreferenceOptions Preference { get; init; } = new();
    public AlignMode Mode { get; init; } = AlignMode.Paired;
    /// <summary>The preference JSONL; null = the stage's first data input, each document one JSONL line.</summary>
    public string? DataPath { get; init; }
    /// <summary>
    /// How records become tokens: null = <c>BOS prompt</c> then <c>completion EOS</c>, a messages prompt written as
    /// <c>&lt;|role|&gt;\n...</c> text; "model" = the model's own chat_template (a Hugging Face model's tokenizer_config.json)
    /// renders messages prompts as tune renders conversations (the prompt ends with the generation prompt, the completion is the
    /// assistant turn with the template's end of turn); "plain" / "chatml" = built-ins. String prompts stay text under any template.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]   // absent when off: keys of existing align stages stay as they were
    public string? Template { get; init; }
    /// <summary>Tokens of prompt + completion per row (capped at the model's max_position_embeddings).</summary>
    public int MaxLength { get; init; } = 256;
    /// <summary>A prompt is left-truncated to this many tokens when a row would not fit (TRL max_prompt_length 128... 512).</summary>
    public int MaxPromptLength { get; init; } = 128;
    /// <summary>Share of records held out for preference accuracy (seeded, a pair stays whole).</summary>
    public double ValidationFraction { get; init; } = 0.1;
    /// <summary>Held-out prompts answered greedily into generations.jsonl and val_gen_length (0 = none).</summary>
    public int Generations { get; init; } = 8;
    public int GenerationTokens { get; init; } = 64;
    /// <summary>
    /// Answers sampled per held-out prompt (temperature <see cref="SampleTemperature"/>, EOS stops) into val_sample_length, 0 =
    /// none. Greedy length is a step function of the logits (an EOS decision flips for every method at once); the mean length of
    /// sampled answers moves continuously with the stop probability. Sample j of prompt i uses the seed (stage seed, i, j) for
    /// every model, the parent included, so methods are compared on the same random numbers.
    /// </summary>
    public int SamplesPerPrompt { get; init; }
    public double SampleTemperature { get; init; } = 1.0;
    /// <summary>Nucleus of the sampled answers (1 = off; papers sample with 0.9..0.95): a micro model's long tail of bytes otherwise derails samples into noise that never stops.</summary>
    public double SampleTopP { get; init; } = 1.0;
    /// <summary>
    /// BatchSize counts pairs (2 rows each). LR 5e-4: DPO on billion-parameter models uses 5e-7..5e-6 (TRL 1e-6), but
    /// the micro models here were pretrained at 1e-3..2e-3 and move little below 1e-4 in a few dozen steps; a quarter to a
    /// half of the pretraining LR is the usual fine-tuning ratio. WeightDecay 0 as TRL: decay pulls toward zero, not toward
    /// the reference; the KL leash is beta.
    /// </summary>
    public TrainConfig Train { get; init; } = new() { Steps = 100, BatchSize = 8, LearningRate = 5e-4, WarmupSteps = 5, WeightDecay = 0.0, LogEvery = 5, EvalEvery = 50, CheckpointEvery = 50 };

    public AlignOptions Validate()
    {
        Preference.Validate();
        if (MaxLength < 2) throw new ArgumentException($"align: max_length must be >= 2 (got {MaxLength})");
        if (Generations < 0 || GenerationTokens < 1) throw new ArgumentException("align: generations must be >= 0 and generation_tokens >= 1");
        if (SamplesPerPrompt < 0 || !(SampleTemperature > 0) || !(SampleTopP > 0 && SampleTopP <= 1))
            throw new ArgumentException($"align: samples_per_prompt must be >= 0 (got {SamplesPerPrompt}), sample_temperature > 0 (got {SampleTemperature}) and sample_top_p in (0, 1] (got {SampleTopP})");
        return this;
    }
}

/// <summary>One scored row: <see cref="Tokens"/> = prompt + completion; targets before <see cref="PromptLength"/> are not scored.</summary>
public sealed record AlignRow(int[] Tokens, int PromptLength)
{
    public int CompletionLength => Tokens.Length - PromptLength;
}

/// <summary>
/// An example as two rows: paired = (prompt + chosen, prompt + rejected); unpaired = (prompt + completion, KTO's mismatched
/// row: this prompt + the NEXT example's completion). Ref* are the parent model's summed log-probs of the rows (NaN until set).
/// </summary>
public sealed record AlignItem(AlignRow First, AlignRow Second, double Label, bool Paired, string Prompt)
{
    public double RefFirst { get; init; } = double.NaN;
    public double RefSecond { get; init; } = double.NaN;
}

/// <summary>Training and held-out items (held-out pairs stay pairs whatever the mode) and what reading the data counted.</summary>
public sealed record AlignData(IReadOnlyList<AlignItem> Train, IReadOnlyList<AlignItem> Validation, PreferenceFile File, int PromptsTruncated, int CompletionsTruncated)
{
    public IEnumerable<AlignItem> All => Train.Concat(Validation);

    /// <summary>Digest of every row's tokens, prompt length and label: the data half of the reference-cache key.</summary>
    public string Fingerprint()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var it in All)
            foreach (var r in new[] { it.First, it.Second })
            {
                sha.AppendData(BitConverter.GetBytes(r.Tokens.Length));
                sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(r.Tokens.AsSpan()));
                sha.AppendData(BitConverter.GetBytes(r.PromptLength));
                sha.AppendData(BitConverter.GetBytes(it.Label));
            }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    public AlignData WithReference(float[] first, float[] second)
    {
        int i = 0;
        AlignItem Set(AlignItem it) { var r = it with { RefFirst = first[i], RefSecond = second[i] }; i++; return r; }
        var train = Train.Select(Set).ToArray();
        var val = Validation.Select(Set).ToArray();
        return this with { Train = train, Validation = val };
    }
}

/// <summary>
/// Rows of B examples in ONE forward: Input, Target (R, T) int64 with R = 2B (first rows, then second rows) or B (point-wise);
/// targets -100 except at completion tokens and padding. Reference (R) float32, Labels (B) float32. Normalizer = B.
/// </summary>
public sealed record PreferenceBatch(Tensor Input, Tensor Target, Tensor Reference, Tensor Labels, long Normalizer, long Tokens) : IBatch
{
    public static PreferenceBatch From(IReadOnlyList<AlignItem> items, bool bothRows, int pad, Device device)
    {
        var rows = items.Select(i => i.First).Concat(bothRows ? items.Select(i => i.Second) : []).ToArray();
        var refs = items.Select(i => (float)i.RefFirst).Concat(bothRows ? items.Select(i => (float)i.RefSecond) : []).ToArray();
        var (input, target) = Rows(rows, pad, device);
        return new PreferenceBatch(input, target, tensor(refs, device: device),
            tensor(items.Select(i => (float)i.Label).ToArray(), device: device), items.Count, input.numel());
    }

    /// <summary>Right-padded inputs (R, T) and targets (R, T): target j = token j+1 when j+1 is a completion token, else -100.</summary>
    public static (Tensor Input, Tensor Target) Rows(IReadOnlyList<AlignRow> rows, int pad, Device device)
    {
        var t = rows.Max(r => r.Tokens.Length) - 1;
        var input = new long[rows.Count * t];
        var target = new long[rows.Count * t];
        Array.Fill(input, pad);
        Array.Fill(target, LanguageModeling.IgnoreIndex);
        for (int i = 0; i < rows.Count; i++)
        {
            var tok = rows[i].Tokens;
            for (int j = 0; j < tok.Length - 1; j++)
            {
                input[i * t + j] = tok[j];
                if (j + 1 >= rows[i].PromptLength) target[i * t + j] = tok[j + 1];
            }
        }
        return (tensor(input, dtype: int64, device: device).view(rows.Count, t), tensor(target, dtype: int64, device: device).view(rows.Count, t));
    }

    public void Dispose()
    {
        Input.Dispose();
        Target.Dispose();
        Reference.Dispose();
        Labels.Dispose();
    }
}

/// <summary>The align objective: example order is a seeded permutation per epoch, so batch (step, micro) is a pure function.</summary>
public sealed class AlignObjective : IObjective<PreferenceBatch>
{
    readonly IReadOnlyList<AlignItem> _items;
    readonly AlignOptions _o;
    readonly int _pad;
    readonly ConcurrentDictionary<long, int[]> _perms = new();

    public AlignObjective(IReadOnlyList<AlignItem> train, AlignOptions options, int padId, string dataFingerprint)
    {
        if (train.Count == 0) throw new ArgumentException("align: no training examples");
        if (train.Any(i => double.IsNaN(i.RefFirst) || double.IsNaN(i.RefSecond)))
            throw new ArgumentException("align: reference log-probs are missing; compute them first (ReferenceCache.Prepare)");
        var paired = options.Mode is AlignMode.Paired or AlignMode.SimPO or AlignMode.Orpo;
        if (paired && train.Any(i => !i.Paired))
            throw new ArgumentException($"align: mode {options.Mode} needs paired data (prompt/chosen/rejected); use mode Kto or Pointwise for prompt/completion/label");
        (_items, _o, _pad) = (train, options.Validate(), padId);
        Fingerprint = $"{dataFingerprint}|{JsonSerializer.Serialize(options with { Train = new TrainConfig() })}";
    }

    public string Kind => "align";
    public string Fingerprint { get; }

    public PreferenceBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var n = _items.Count;
        var first = (step * config.Accumulation + micro) * config.BatchSize;
        var items = new AlignItem[config.BatchSize];
        for (int i = 0; i < items.Length; i++)
        {
            var g = first + i;
            var perm = _perms.GetOrAdd(g / n, e => new Rng(Rng.Derive(config.Seed, 0xA11, e)).Permutation(n));
            items[i] = _items[perm[g % n]];
        }
        return PreferenceBatch.From(items, _o.Mode != AlignMode.Pointwise, _pad, device);
    }

    public Tensor Loss(CausalLM model, PreferenceBatch batch, MetricSink metrics)
    {
        var b = batch.Normalizer;
        var lp = SequenceLogProbs.Compute(model, batch.Input, batch.Target);                      // (R)
        var first = new SequenceLogProbs(lp.Sum.narrow(0, 0, b), lp.Count.narrow(0, 0, b));        // (B)
        var refFirst = batch.Reference.narrow(0, 0, b);
        var p = _o.Preference;
        Tensor losses;
        if (_o.Mode is AlignMode.Paired or AlignMode.SimPO or AlignMode.Orpo)
        {
            var second = new SequenceLogProbs(lp.Sum.narrow(0, b, b), lp.Count.narrow(0, b, b));
            var r = _o.Mode switch
            {
                AlignMode.Paired => PreferenceLosses.Pairs(first, second, refFirst, batch.Reference.narrow(0, b, b), p),
                AlignMode.SimPO => PreferenceLosses.SimPO(first, second, p),
                _ => PreferenceLosses.Orpo(first, second, p),
            };
            r.Report(metrics);
            metrics.Add("length/rejected", second.Count.mean());
            losses = r.Losses;
        }
        else
        {
            var desirable = batch.Labels.gt(0.5);
            var d = first.Sum - refFirst;
            Tensor rewards;
            if (_o.Mode == AlignMode.Kto)
            {
                var k = PreferenceLosses.Kto(first.Sum, refFirst, desirable, lp.Sum.narrow(0, b, b), batch.Reference.narrow(0, b, b), p);
                k.Report(metrics);
                (losses, rewards) = (k.Losses, k.Rewards);
            }
            else
            {
                losses = PreferenceLosses.Pointwise(d, batch.Labels, p.Beta);
                rewards = p.Beta * d.detach();
                var good = desirable.to(float32);
                metrics.Add("rewards/chosen", (rewards * good).sum() / good.sum().clamp_min(1));
                metrics.Add("rewards/rejected", (rewards * (1 - good)).sum() / (1 - good).sum().clamp_min(1));
            }
            metrics.Add("rewards/accuracy", rewards.gt(0).eq(desirable).to(float32).mean());   // implicit reward's sign agrees with the label
        }
        using (no_grad())
        {
            // Per-token mean of log pi - log pi_ref on the first rows (chosen / the completion): a KL-to-reference estimate on data.
            metrics.Add("kl_ref", (first.Sum - refFirst).sum() / first.Count.sum().clamp_min(1));
            metrics.Add("length/chosen", first.Count.mean());
        }
        return losses.sum();
    }
}

/// <summary>
/// Reference log-probs computed ONCE with the parent model under no_grad, saved as reference_logps.safetensors in the stage
/// directory with the key sha256(rows, parent's config + weights) in its metadata; a later run (resume) with the same key reads
/// them back. The reference model is loaded, used and disposed before the policy is loaded: never two models in memory.
/// </summary>
public static class ReferenceCache
{
    public const string FileName = "reference_logps.safetensors";

    /// <summary>Times the reference model was run in this process (tests read it).</summary>
    public static int Computations;

    public static (AlignData Data, bool Computed) Prepare(string parentDir, string stageDir, AlignData data, Device device, int batchRows, TextWriter? log = null)
    {
        var key = Key(parentDir, data);
        var path = Path.Combine(stageDir, FileName);
        var n = data.Train.Count + data.Validation.Count;
        if (File.Exists(path))
        {
            using (var f = SafetensorsFile.Open(path))
                if (f.Metadata.TryGetValue("key", out var k) && k == key)
                {
                    var t = Safetensors.Load(path);
                    try
                    {
                        if (t["first"].shape[0] == n)
                            return (data.WithReference(t["first"].data<float>().ToArray(), t["second"].data<float>().ToArray()), false);
                    }
                    finally { foreach (var x in t.Values) x.Dispose(); }
                }
            log?.WriteLine($"align: {path} was made for other data or another parent; recomputing");
        }
        Interlocked.Increment(ref Computations);
        float[] first, second;
        var (model, _) = Checkpoint.Load(parentDir, device);
        using (model)
        {
            var all = data.All.ToArray();
            first = SequenceSums(model, all.Select(i => i.First).ToArray(), batchRows).Sum;
            second = SequenceSums(model, all.Select(i => i.Second).ToArray(), batchRows).Sum;
        }
        Directory.CreateDirectory(stageDir);
        using (var tf = tensor(first))
        using (var ts = tensor(second))
            Safetensors.Save(path, [new("first", tf), new("second", ts)], new Dictionary<string, string> { ["key"] = key });
        log?.WriteLine($"align: reference log-probs of {n} examples cached in {path}");
        return (data.WithReference(first, second), true);
    }

    /// <summary>sha256 of the rows' fingerprint and the parent's config.json and *.safetensors bytes.</summary>
    public static string Key(string parentDir, AlignData data)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes(data.Fingerprint()));
        foreach (var f in Directory.GetFiles(parentDir).Where(f => f.EndsWith(".safetensors") || f.EndsWith(Checkpoint.ConfigFile)).OrderBy(f => f, StringComparer.Ordinal))
        {
            sha.AppendData(Encoding.UTF8.GetBytes(Path.GetFileName(f)));
            using var s = File.OpenRead(f);
            var buf = new byte[1 << 20];
            for (int r; (r = s.Read(buf)) > 0;) sha.AppendData(buf.AsSpan(0, r));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>Summed log-probs and counts of the completion tokens of each row, in eval mode under no_grad.</summary>
    public static (float[] Sum, float[] Count) SequenceSums(CausalLM model, IReadOnlyList<AlignRow> rows, int batchRows)
    {
        var device = model.EmbeddingWeight.device;
        var wasTraining = model.training;
        model.eval();
        using var _ = no_grad();
        var sums = new List<float>(rows.Count);
        var counts = new List<float>(rows.Count);
        try
        {
            for (int s = 0; s < rows.Count; s += batchRows)
            {
                using var scope = NewDisposeScope();
                var (input, target) = PreferenceBatch.Rows(rows.Skip(s).Take(batchRows).ToArray(), model.Config.PadTokenId ?? 0, device);
                var lp = SequenceLogProbs.Compute(model, input, target);
                sums.AddRange(lp.Sum.cpu().data<float>().ToArray());
                counts.AddRange(lp.Count.cpu().data<float>().ToArray());
            }
        }
        finally { if (wasTraining) model.train(); }
        return (sums.ToArray(), counts.ToArray());
    }
}

/// <summary>The phases of an align stage as plain functions: data → items, validation, the executor's run.</summary>
public static class Align
{
    /// <summary>
    /// Splits the records (seeded, pairs whole), tokenizes them (<see cref="PreferenceData.Tokenize"/>) and makes the rows of the
    /// mode: KTO / point-wise unpair paired TRAINING data (chosen label 1, rejected label 0); held-out pairs stay pairs.
    /// </summary>
    public static AlignData Prepare(PreferenceFile file, ITokenizer tokenizer, AlignOptions o, long seed, int maxPositions)
    {
        var maxLength = Math.Min(o.MaxLength, maxPositions);
        var maxPrompt = Math.Min(o.MaxPromptLength, maxLength - 1);
        var (train, val) = PreferenceData.Split(file.Records, o.ValidationFraction, seed);
        if (o.Mode is AlignMode.Kto or AlignMode.Pointwise && file.Paired)
            train = train.SelectMany(r => new[] { r with { Rejected = null, Label = 1 }, r with { Chosen = r.Rejected!, Rejected = null, Label = 0 } }).ToArray();
        var template = o.Template is { } name ? ChatTemplates.Resolve(name, tokenizer) : null;
        var tt = PreferenceData.Tokenize(train, tokenizer, maxLength, maxPrompt, template);
        var tv = PreferenceData.Tokenize(val, tokenizer, maxLength, maxPrompt, template);
        return new AlignData(Items(tt.Examples, train, maxLength), Items(tv.Examples, val, maxLength), file,
            tt.PromptsTruncated + tv.PromptsTruncated, tt.CompletionsTruncated + tv.CompletionsTruncated);
    }

    static AlignItem[] Items(IReadOnlyList<PreferenceExample> ex, IReadOnlyList<PreferenceRecord> records, int maxLength)
    {
        static AlignRow Row(int[] prompt, int[] completion, int max) =>
            new([.. prompt, .. completion.Length > max - prompt.Length ? completion[..(max - prompt.Length)] : completion], prompt.Length);
        return ex.Select((e, i) => new AlignItem(
            Row(e.Prompt, e.Chosen, maxLength),
            e.Rejected is { } r ? Row(e.Prompt, r, maxLength) : Row(e.Prompt, ex[(i + 1) % ex.Count].Chosen, maxLength),   // KTO's mismatched row
            e.Label, e.Paired, records[i].Prompt)).ToArray();
    }

    /// <summary>
    /// Held-out metrics: val_pref_accuracy = share of pairs with beta (dc − dr) &gt; 0 (the DPO implicit reward; for unpaired data,
    /// share whose d has the label's sign), val_logp_accuracy = share with log pi(chosen) &gt; log pi(rejected) (meaningful at step 0
    /// too, where every implicit reward is 0; val_ref_logp_accuracy is the starting model's), val_avg_logp_accuracy (per token, SimPO's reward), val_margin, val_kl_ref, and
    /// val_gen_length = mean tokens generated greedily for the first <c>Generations</c> held-out prompts. (Sampled answers are
    /// drawn once, by the stage after training: val_sample_length.)
    /// </summary>
    public static Func<CausalLM, IReadOnlyDictionary<string, double>> Validation(IReadOnlyList<AlignItem> val, AlignOptions o, ITokenizer tokenizer, int batchRows) =>
        model =>
        {
            var m = new Dictionary<string, double>();
            if (val.Count == 0) return m;
            var (pc, lc) = ReferenceCache.SequenceSums(model, val.Select(i => i.First).ToArray(), batchRows);
            var dc = val.Select((it, i) => pc[i] - it.RefFirst).ToArray();
            m["val_kl_ref"] = dc.Sum() / Math.Max(1, lc.Sum());
            if (val[0].Paired)
            {
                var (pr, lr) = ReferenceCache.SequenceSums(model, val.Select(i => i.Second).ToArray(), batchRows);
                var h = val.Select((it, i) => dc[i] - (pr[i] - it.RefSecond)).ToArray();
                m["val_pref_accuracy"] = h.Average(x => o.Preference.Beta * x > 0 ? 1.0 : 0.0);
                m["val_margin"] = h.Average(x => o.Preference.Beta * x);
                m["val_logp_accuracy"] = val.Select((_, i) => pc[i] > pr[i] ? 1.0 : 0.0).Average();
                m["val_ref_logp_accuracy"] = val.Average(it => it.RefFirst > it.RefSecond ? 1.0 : 0.0);   // the starting model's, for comparison
                m["val_avg_logp_accuracy"] = val.Select((_, i) => pc[i] / Math.Max(1, lc[i]) > pr[i] / Math.Max(1, lr[i]) ? 1.0 : 0.0).Average();
                m["val_ref_avg_logp_accuracy"] = val.Average(it => it.RefFirst / Math.Max(1, it.First.CompletionLength) > it.RefSecond / Math.Max(1, it.Second.CompletionLength) ? 1.0 : 0.0);
            }
            else m["val_pref_accuracy"] = val.Select((it, i) => dc[i] > 0 == it.Label > 0.5 ? 1.0 : 0.0).Average();
            var gens = Generate(model, val, o, tokenizer);
            if (gens.Count > 0) m["val_gen_length"] = gens.Average(g => g.Tokens.Length);
            return m;
        };

    /// <summary>Greedy answers (EOS stops, not counted) to the first <c>Generations</c> held-out prompts.</summary>
    public static List<(AlignItem Item, int[] Tokens)> Generate(CausalLM model, IReadOnlyList<AlignItem> val, AlignOptions o, ITokenizer tokenizer)
    {
        var result = new List<(AlignItem, int[])>();
        foreach (var it in val.Take(o.Generations))
        {
            var prompt = it.First.Tokens[..it.First.PromptLength];
            var room = Math.Min(o.GenerationTokens, model.Config.MaxPositionEmbeddings - prompt.Length);
            if (room < 1) continue;
            var tokens = Generation.Generate(model, prompt, SamplingOptions.Greedy(room) with { StopToken = tokenizer.EosId });
            result.Add((it, tokens.Length > 0 && tokens[^1] == tokenizer.EosId ? tokens[..^1] : tokens));
        }
        return result;
    }

    /// <summary>
    /// <c>SamplesPerPrompt</c> sampled answers (EOS stops, not counted) to each of the first <c>Generations</c> held-out prompts,
    /// with each answer's expected length given its path (<see cref="ResponseLength"/>); sample j of prompt i draws from its own
    /// generator seeded by (seed, i, j), whatever the model.
    /// </summary>
    public static List<SampledAnswers> Sample(CausalLM model, IReadOnlyList<AlignItem> val, AlignOptions o, ITokenizer tokenizer, long seed)
    {
        var result = new List<SampledAnswers>();
        if (o.SamplesPerPrompt == 0) return result;
        foreach (var (it, i) in val.Take(o.Generations).Select((it, i) => (it, i)))
        {
            var room = Math.Min(o.GenerationTokens, model.Config.MaxPositionEmbeddings - it.First.PromptLength);
            if (room < 1) continue;
            result.Add(ResponseLength.Sample(model, it, o.SamplesPerPrompt, room, o.SampleTemperature, o.SampleTopP, tokenizer.EosId,
                j => (long)Rng.Derive(seed, 0x5A3E, i, j)));
        }
        return result;
    }

    /// <summary>
    /// A warning when a length-normalised objective (sigmoid_norm, SimPO) runs at a beta meant for summed log-ratios: its
    /// margins are per-token means, |y| times smaller than DPO's, so below beta 0.5 its loss hardly leaves log 2. Says which
    /// beta puts it on DPO's scale (beta x the mean completion tokens of the training items); null when nothing is amiss.
    /// </summary>
    public static string? BetaScaleHint(AlignOptions o, IReadOnlyList<AlignItem> train)
    {
        var normalised = o.Mode == AlignMode.SimPO ? "SimPO"
            : o.Mode == AlignMode.Paired && o.Preference.Losses.Any(l => l.Kind == PreferenceLoss.SigmoidNorm) ? "sigmoid_norm (LN-DPO)" : null;
        if (normalised is null || o.Preference.Beta >= 0.5 || train.Count == 0) return null;
        var meanTokens = train.Average(it => (it.First.CompletionLength + it.Second.CompletionLength) / 2.0);
        return $"align: warning: {normalised} compares per-token means, so beta {o.Preference.Beta:G4} puts its margins about {meanTokens:F0}x "
            + $"below DPO's at the same beta and its loss stays near log 2; beta {o.Preference.Beta * meanTokens:G3} (beta x the mean "
            + "completion tokens) puts it on DPO's scale (SimPO's paper uses 2 to 2.5)";
    }

    /// <summary>Mean tokens per sampled answer.</summary>
    public static double MeanLength(IReadOnlyList<SampledAnswers> samples) => samples.SelectMany(s => s.Samples).Average(t => t.Length);

    /// <summary>Mean expected length of a sampled answer (the stop decisions integrated out along each path): the same expectation as <see cref="MeanLength"/>, less noisy.</summary>
    public static double MeanExpectedLength(IReadOnlyList<SampledAnswers> samples) => samples.SelectMany(s => s.Expected).Average();

    /// <summary>Share of sampled answers that ran to the token cap without EOS.</summary>
    public static double CappedShare(IReadOnlyList<SampledAnswers> samples) => samples.SelectMany(s => s.Capped).Average(c => c ? 1.0 : 0.0);
}

/// <summary>
/// Kind "align": reads the preference data, caches the parent's reference log-probs (parent loaded, used, disposed), loads the
/// policy from the parent, trains with the one loop, and writes align_report.json and generations.jsonl next to final/.
/// </summary>
public sealed class AlignExecutor : IStageExecutor
{
    public const string ReportFile = "align_report.json";
    public const string GenerationsFile = "generations.jsonl";

    public string Kind => "align";

    public IReadOnlyDictionary<string, double> Execute(StageContext ctx, object config)
    {
        var o = ((AlignOptions)config).Validate();
        var parent = ctx.ParentAt(0);
        var file = o.DataPath is { } path ? PreferenceData.Read(path)
            : PreferenceData.Parse(ctx.DataAt(0, "preference data (JSONL lines), or set DataPath").Documents, ctx.Data[0].Name);
        var tokenizer = Tokenizers.Load(parent);
        var modelConfig = ModelConfig.Load(Path.Combine(parent, Checkpoint.ConfigFile));
        var train = o.Train with { Seed = ctx.Seed };
        var data = Align.Prepare(file, tokenizer, o, ctx.Seed, modelConfig.MaxPositionEmbeddings);
        var rows = 2 * train.BatchSize;
        if (Align.BetaScaleHint(o, data.Train) is { } hint) ctx.Log.WriteLine(hint);
        (data, var computed) = ReferenceCache.Prepare(parent, ctx.Directory, data, ctx.Device, rows, ctx.Log);   // reference model gone after this

        var (model, _) = Checkpoint.Load(parent, ctx.Device);
        using (model)
        {
            // The parent's own greedy answers (the policy is still the parent here, even when the trainer resumes below).
            var refGens = Align.Generate(model, data.Validation, o, tokenizer);
            var refSamples = Align.Sample(model, data.Validation, o, tokenizer, ctx.Seed);
            var objective = new AlignObjective(data.Train, o, tokenizer.PadId, data.Fingerprint());
            var result = Trainer.Run(model, tokenizer, objective, train, ctx.Directory, Align.Validation(data.Validation, o, tokenizer, rows), ctx.Log, parent);
            var metrics = new Dictionary<string, double>(result.LastMetrics);
            if (refGens.Count > 0) metrics["val_ref_gen_length"] = refGens.Average(g => g.Tokens.Length);
            if (refSamples.Count > 0)
            {
                metrics["val_ref_sample_length"] = Align.MeanLength(refSamples);
                metrics["val_ref_expected_length"] = Align.MeanExpectedLength(refSamples);
                metrics["val_ref_sample_capped"] = Align.CappedShare(refSamples);
            }
            var gens = Align.Generate(model, data.Validation, o, tokenizer);
            var samples = Align.Sample(model, data.Validation, o, tokenizer, ctx.Seed);
            if (samples.Count > 0)
            {
                metrics["val_sample_length"] = Align.MeanLength(samples);
                metrics["val_expected_length"] = Align.MeanExpectedLength(samples);
                metrics["val_sample_capped"] = Align.CappedShare(samples);
            }
            var lines = gens.Select((g, i) => JsonSerializer.Serialize(new
            {
                prompt = g.Item.Prompt,
                chosen = tokenizer.Decode(g.Item.First.Tokens[g.Item.First.PromptLength..]),
                rejected = g.Item.Paired ? tokenizer.Decode(g.Item.Second.Tokens[g.Item.Second.PromptLength..]) : null,
                generation = tokenizer.Decode(g.Tokens),
                tokens = g.Tokens.Length,
                samples = i < samples.Count ? samples[i].Samples.Select(tokenizer.Decode).ToArray() : null,
                expected_tokens = i < samples.Count ? samples[i].Expected : null,
            }));
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, GenerationsFile), string.Concat(lines.Select(l => l + "\n")));
            var report = new
            {
                mode = o.Mode.ToString(),
                lines_read = file.LinesRead,
                records = file.Records.Count,
                skipped_empty_completion = file.Skipped,
                skipped_at = file.SkippedAt,
                prompts_truncated = data.PromptsTruncated,
                completions_truncated = data.CompletionsTruncated,
                train_examples = data.Train.Count,
                validation_examples = data.Validation.Count,
                reference_computed = computed,
                generation_mean_tokens = gens.Count > 0 ? gens.Average(g => g.Tokens.Length) : 0,
                reference_generation_mean_tokens = refGens.Count > 0 ? refGens.Average(g => g.Tokens.Length) : 0,
                sample_mean_tokens = samples.Count > 0 ? Align.MeanLength(samples) : 0,
                reference_sample_mean_tokens = refSamples.Count > 0 ? Align.MeanLength(refSamples) : 0,
                expected_mean_tokens = samples.Count > 0 ? Align.MeanExpectedLength(samples) : 0,
                reference_expected_mean_tokens = refSamples.Count > 0 ? Align.MeanExpectedLength(refSamples) : 0,
                sample_capped_share = samples.Count > 0 ? Align.CappedShare(samples) : 0,
                reference_sample_capped_share = refSamples.Count > 0 ? Align.CappedShare(refSamples) : 0,
                metrics,
            };
            AtomicFile.WriteAllText(Path.Combine(ctx.Directory, ReportFile), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
            return metrics;
        }
    }
}
