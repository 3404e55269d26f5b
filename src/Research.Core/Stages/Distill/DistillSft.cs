using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Research.Data;
using Research.Models;
using Research.Runs;
using Research.Training;
using static TorchSharp.torch;

namespace Research.Stages;

/// <summary>A distillation batch on prompt/completion data: the collated rows, which training sequences they are,
/// and whether the completions are the student's own samples (on-policy) rather than the data's.</summary>
public sealed record DistillBatch(SftBatch Sft, long[] Rows, bool OnPolicy) : IBatch
{
    public long Normalizer => Sft.Normalizer;
    public long Tokens => Sft.Tokens;
    public void Dispose() => Sft.Dispose();
}

/// <summary>
/// Token-level distillation on prompt/completion (or chat) examples, one example per row, visited in a seeded permutation
/// per epoch. Off-policy batches: (1 - kd_ratio) CE + kd_ratio D(teacher, student) on the data's completions. On-policy
/// batches (GKD; chosen per (seed, step, micro) with probability <see cref="DistillStageOptions.OnPolicyLambda"/>): the
/// student samples a completion for each prompt with a generator seeded by (seed, step, micro, row), the teacher scores it,
/// and the loss is D alone on the sampled tokens (there is no label for them). The teacher is either a live model or a
/// <see cref="TeacherTopKCache"/> (then the divergence is <see cref="DistillLosses.SummedTopK"/>).
/// </summary>
public sealed class DistillSftObjective : IObjective<DistillBatch>
{
    readonly IReadOnlyList<SftTokens> _sequences;
    readonly CausalLM _student;
    readonly CausalLM? _teacher;
    readonly TeacherTopKCache? _cache;
    readonly DistillStageOptions _o;
    readonly long _seed;
    readonly ITokenizer _tokenizer;
    (long Epoch, int[] Order) _perm = (-1, []);

    public DistillSftObjective(IReadOnlyList<SftTokens> sequences, CausalLM student, CausalLM? teacher, TeacherTopKCache? cache,
                               DistillStageOptions options, long seed, ITokenizer tokenizer, string dataFingerprint)
    {
        if (sequences.Count == 0) throw new ArgumentException("distill: no training example");
        if ((teacher is null) == (cache is null)) throw new ArgumentException("distill: give either a live teacher or a teacher top-k cache");
        if (cache is not null && options.OnPolicyLambda > 0)
            throw new ArgumentException("distill: on-policy batches need the live teacher to score the student's samples; teacher_top_k must be 0 when on_policy_lambda > 0");
        (_sequences, _student, _teacher, _cache, _o, _seed, _tokenizer) = (sequences, student, teacher, cache, options, seed, tokenizer);
        Fingerprint = $"{dataFingerprint}|loss={options.Loss}|block={options.BlockLength}|lambda={options.OnPolicyLambda:R}|new={options.MaxNewTokens}" +
                      $"|sample_t={options.SampleTemperature:R}|topk={options.TeacherTopK}|template={options.Template}|val={options.ValidationFraction:R}";
    }

    public string Kind => "distill";
    public string Fingerprint { get; }

    /// <summary>Whether micro-batch (step, micro) is on-policy: a uniform draw from (seed, step, micro) below lambda.</summary>
    public bool IsOnPolicy(long step, int micro) =>
        _o.OnPolicyLambda > 0 && new Rng(Rng.Derive(_seed, 0x6F50, step, micro)).NextDouble() < _o.OnPolicyLambda;

    public DistillBatch Batch(long step, int micro, TrainConfig config, Device device)
    {
        var first = (step * config.Accumulation + micro) * config.BatchSize;
        var n = _sequences.Count;
        var rows = new long[config.BatchSize];
        for (int i = 0; i < rows.Length; i++)
        {
            var j = first + i;
            rows[i] = Order(j / n)[(int)(j % n)];
        }
        var onPolicy = IsOnPolicy(step, micro);
        var seqs = rows.Select((r, i) => (IReadOnlyList<SftTokens>)[onPolicy ? StudentSample(_sequences[(int)r], step, micro, i) : _sequences[(int)r]]).ToArray();
        return new DistillBatch(SftBatch.Collate(seqs, false, step, micro, device, _tokenizer.PadId), rows, onPolicy);
    }

    int[] Order(long epoch)
    {
        if (_perm.Epoch != epoch) _perm = (epoch, new Rng(Rng.Derive(_seed, 0x7E, epoch)).Permutation(_sequences.Count));
        return _perm.Order;
    }

    /// <summary>The example's prompt followed by the student's own sampled completion (trained), seeded by (seed, step, micro, row).</summary>
    public SftTokens StudentSample(SftTokens s, long step, int micro, int row)
    {
        var prompt = PromptOf(s);
        var room = Math.Min(_o.MaxNewTokens, Math.Min(_o.BlockLength + 1, _student.Config.MaxPositionEmbeddings) - prompt.Length);
        if (room <= 0) return s;
        var sampling = new SamplingOptions
        {
            MaxNewTokens = room, Temperature = _o.SampleTemperature, StopToken = _tokenizer.EosId,
            Seed = unchecked((long)Rng.Derive(_seed, 0x6F51, step, micro, row)),
        };
        var generated = Generation.Generate(_student, prompt, sampling);
        return new SftTokens([.. prompt, .. generated], [.. prompt.Select(_ => false), .. generated.Select(_ => true)]);
    }

    /// <summary>The tokens before the first trained one.</summary>
    public static int[] PromptOf(SftTokens s)
    {
        var k = Array.IndexOf(s.Trained, true);
        return s.Ids[..(k < 0 ? s.Length : Math.Max(k, 1))];
    }

    public Tensor Loss(CausalLM model, DistillBatch batch, MetricSink metrics)
    {
        var input = batch.Sft.Input;
        var target = batch.Sft.Target;
        var logits = model.Forward(input);                                                    // (B, T, V)
        Tensor kd;
        if (_cache is not null)
        {
            var (values, indices) = _cache.For(batch.Rows, input.shape[1], logits.device);
            kd = DistillLosses.SummedTopK(logits, values, indices, target, _o.Loss);
        }
        else
        {
            Tensor teacherLogits;
            using (no_grad()) teacherLogits = _teacher!.Forward(input);
            kd = DistillLosses.Summed(logits, teacherLogits, target, _o.Loss);
        }
        metrics.Add("kd", kd / batch.Normalizer);
        metrics.Add("on_policy", tensor(batch.OnPolicy ? 1.0 : 0.0));
        if (batch.OnPolicy) return kd;
        var ce = TokenLoss.SummedCrossEntropy(logits, target);
        metrics.Add("ce", ce / batch.Normalizer);
        return (1 - _o.Loss.KdRatio) * ce + _o.Loss.KdRatio * kd;
    }
}

/// <summary>
/// The teacher's top-K logits (values float32 and vocabulary indices) at every position of every training sequence,
/// computed ONCE with the teacher under no_grad and saved as teacher_topk.safetensors in the stage directory, with the key
/// sha256(sequences, K, teacher config.json + *.safetensors bytes) in its metadata. A run that finds the file with the same key
/// reads it back and never loads the teacher; the teacher is loaded, used and disposed before the student is loaded.
/// </summary>
public sealed class TeacherTopKCache : IDisposable
{
    public const string FileName = "teacher_topk.safetensors";

    /// <summary>Times the teacher was run to fill a cache in this process (tests read it).</summary>
    public static int Computations;

    /// <summary>(S, L, K) float32 logits and int64 indices; row s, position t = the teacher's logits after reading tokens 0..t of sequence s.</summary>
    public Tensor Values { get; }
    public Tensor Indices { get; }
    public string Path { get; }

    TeacherTopKCache(Tensor values, Tensor indices, string path) => (Values, Indices, Path) = (values, indices, path);

    public static TeacherTopKCache Prepare(string teacherDir, string stageDir, IReadOnlyList<SftTokens> sequences, int k, Device device, int batchRows, int padId, TextWriter? log = null)
    {
        if (k <= 0) throw new ArgumentOutOfRangeException(nameof(k), k, "teacher_top_k must be > 0");
        var key = Key(teacherDir, sequences, k);
        var path = System.IO.Path.Combine(stageDir, FileName);
        var length = sequences.Max(s => s.Length - 1);
        if (File.Exists(path))
        {
            using (var f = SafetensorsFile.Open(path))
                if (f.Metadata.TryGetValue("key", out var stored) && stored == key)
                {
                    var t = Safetensors.Load(path);
                    log?.WriteLine($"distill: teacher top-{k} logits read from {path}; the teacher is not loaded");
                    return new TeacherTopKCache(t["values"], t["indices"].to(int64), path);
                }
            log?.WriteLine($"distill: {path} was made for other data, another K or another teacher; recomputing");
        }
        Interlocked.Increment(ref Computations);
        var values = zeros(sequences.Count, length, k, dtype: float32);
        var indices = zeros(sequences.Count, length, k, dtype: int64);
        var (teacher, _) = Checkpoint.Load(teacherDir, device);
        using (teacher)
        using (no_grad())
        {
            if (k > teacher.Config.VocabSize) throw new ArgumentException($"distill: teacher_top_k {k} exceeds the teacher's vocabulary of {teacher.Config.VocabSize} ({teacherDir})");
            teacher.eval();
            for (int i = 0; i < sequences.Count; i += batchRows)
            {
                using var scope = NewDisposeScope();
                var rows = sequences.Skip(i).Take(batchRows).Select(s => (IReadOnlyList<SftTokens>)[s]).ToArray();
                using var batch = SftBatch.Collate(rows, false, 0, 0, device, padId);
                var (v, ix) = teacher.Forward(batch.Input).to(float32).topk(k);                   // (b, t, K)
                var t = v.shape[1];
                values.narrow(0, i, rows.Length).narrow(1, 0, t).copy_(v.cpu());
                indices.narrow(0, i, rows.Length).narrow(1, 0, t).copy_(ix.cpu());
            }
        }
        Directory.CreateDirectory(stageDir);
        using (var i32 = indices.to(int32))
            Safetensors.Save(path, [new("values", values), new("indices", i32)], new Dictionary<string, string> { ["key"] = key, ["k"] = $"{k}" });
        log?.WriteLine($"distill: teacher top-{k} logits of {sequences.Count} sequences cached in {path} ({new FileInfo(path).Length / 1e6:F1} MB)");
        return new TeacherTopKCache(values, indices, path);
    }

    /// <summary>Values and indices (B, T, K) of the given training rows, cut to the batch's T positions.</summary>
    public (Tensor Values, Tensor Indices) For(long[] rows, long positions, Device device)
    {
        using var r = tensor(rows, dtype: int64);
        return (Values.index_select(0, r).narrow(1, 0, positions).to(device), Indices.index_select(0, r).narrow(1, 0, positions).to(device));
    }

    /// <summary>sha256 of the sequences (ids and trained flags), K, and the teacher's config.json and *.safetensors bytes.</summary>
    public static string Key(string teacherDir, IReadOnlyList<SftTokens> sequences, int k)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes($"topk={k};n={sequences.Count};"));
        foreach (var s in sequences)
        {
            sha.AppendData(BitConverter.GetBytes(s.Length));
            sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(s.Ids.AsSpan()));
            sha.AppendData(s.Trained.Select(b => b ? (byte)1 : (byte)0).ToArray());
        }
        foreach (var f in Directory.GetFiles(teacherDir).Where(f => f.EndsWith(".safetensors") || f.EndsWith(Checkpoint.ConfigFile)).OrderBy(f => f, StringComparer.Ordinal))
        {
            sha.AppendData(Encoding.UTF8.GetBytes(System.IO.Path.GetFileName(f)));
            using var stream = File.OpenRead(f);
            var buffer = new byte[1 << 20];
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0) sha.AppendData(buffer, 0, read);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    public void Dispose()
    {
        Values.Dispose();
        Indices.Dispose();
    }
}

/// <summary>
/// Sequence-level KD (Kim and Rush): the teacher answers every training prompt (greedy, or sampled at
/// <see cref="DistillStageOptions.TeacherTemperature"/> with a generator seeded by (seed, example)); the answers are written as
/// prompt/completion JSONL (teacher_generations.jsonl in the stage directory), and the student is then tuned on that file
/// with the SFT objective (<see cref="TuneObjective"/>), the plain template rendering prompt + completion + EOS.
/// </summary>
public static class SequenceKd
{
    public const string FileName = "teacher_generations.jsonl";

    public static string Generate(string teacherDir, string stageDir, IReadOnlyList<SftTokens> sequences, ITokenizer tokenizer, DistillStageOptions o, long seed, Device device, TextWriter? log = null)
    {
        var path = System.IO.Path.Combine(stageDir, FileName);
        var lines = new List<string>(sequences.Count);
        var (teacher, _) = Checkpoint.Load(teacherDir, device);
        using (teacher)
        {
            for (int i = 0; i < sequences.Count; i++)
            {
                var prompt = DistillSftObjective.PromptOf(sequences[i]);
                var room = Math.Min(o.MaxNewTokens, Math.Min(o.BlockLength + 1, teacher.Config.MaxPositionEmbeddings) - prompt.Length - 1);
                if (room <= 0) continue;
                var output = Generation.Generate(teacher, prompt, new SamplingOptions
                {
                    MaxNewTokens = room, Temperature = o.TeacherTemperature, StopToken = tokenizer.EosId,
                    Seed = unchecked((long)Rng.Derive(seed, 0x5E0, i)),
                });
                var answer = output.Length > 0 && output[^1] == tokenizer.EosId ? output[..^1] : output;
                var text = prompt.Length > 0 && prompt[0] == tokenizer.BosId ? prompt[1..] : prompt;
                lines.Add(new JsonObject { ["prompt"] = tokenizer.Decode(text), ["completion"] = tokenizer.Decode(answer) }.ToJsonString());
            }
        }
        if (lines.Count == 0) throw new ArgumentException($"distill (sequence-level): no prompt leaves room for an answer under block_length {o.BlockLength}");
        Directory.CreateDirectory(stageDir);
        AtomicFile.WriteAllText(path, string.Join("\n", lines) + "\n");
        log?.WriteLine($"distill: the teacher answered {lines.Count} prompts into {path}");
        return path;
    }
}
