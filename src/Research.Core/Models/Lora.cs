using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Research.Data;
using Research.Runs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Research.Models;

/// <summary>
/// LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models"): a frozen linear W gets a trained
/// low-rank update, y = W x + (alpha / r) · B A dropout(x), A (r × in), B (out × r). Init as PEFT does it:
/// A kaiming-uniform (a = sqrt 5, i.e. uniform ±1/sqrt(in)), B zeros, so the adapted model starts equal to the base.
/// </summary>
public sealed partial record LoraOptions
{
    /// <summary>The rank r of the update.</summary>
    public int Rank { get; init; } = 8;
    /// <summary>The update is scaled by alpha / r.</summary>
    public double Alpha { get; init; } = 16;
    /// <summary>Dropout on the adapter's input while training (0 = off).</summary>
    public double Dropout { get; init; }
    /// <summary>Linear modules to adapt, by their Hugging Face name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.</summary>
    public string[] TargetModules { get; init; } = ["q_proj", "v_proj"];

    public double Scaling => Alpha / Rank;

    public LoraOptions Validate()
    {
        if (Rank < 1) throw new ArgumentException($"lora: rank must be >= 1 (got {Rank})");
        if (!(Alpha > 0) || !double.IsFinite(Alpha)) throw new ArgumentException($"lora: alpha must be a positive number (got {Alpha})");
        if (!(Dropout is >= 0 and < 1)) throw new ArgumentException($"lora: dropout must be in [0, 1) (got {Dropout})");
        if (TargetModules is null || TargetModules.Length == 0) throw new ArgumentException("lora: target_modules is empty; name at least one of " + string.Join(", ", Lora.LinearNames));
        var unknown = TargetModules.Where(t => t != Lora.AllLinear && !Lora.LinearNames.Contains(t)).ToArray();
        if (unknown.Length > 0)
            throw new ArgumentException($"lora: unknown target module(s) {string.Join(", ", unknown)}; the model's linear modules are {string.Join(", ", Lora.LinearNames)}");
        return this;
    }
}

/// <summary>One adapted linear: its HF module path (model.layers.0.self_attn.q_proj) and the trained A, B.</summary>
public sealed class LoraLayer : IDisposable
{
    public string Module { get; }
    public Parameter A { get; }   // (r, in)
    public Parameter B { get; }   // (out, r)
    readonly double _scaling, _dropout;
    readonly Generator? _generator;   // the adapter's dropout stream (null without dropout)

    internal LoraLayer(string module, Parameter a, Parameter b, double scaling, double dropout, Generator? generator)
    {
        (Module, A, B, _scaling, _dropout, _generator) = (module, a, b, scaling, dropout, generator);
    }

    /// <summary>W x (+ bias) + scaling · B A dropout(x); dropout only while the base module trains.</summary>
    internal Tensor Forward(Linear linear, Tensor x) => linear.forward(x) + Update(linear, x);

    /// <summary>scaling · B A dropout(x): what the adapter adds to the base module's output. The dropout mask is drawn
    /// from the adapter's own generator, never torch's global one, so trainings in one process do not disturb each other.</summary>
    internal Tensor Update(Linear linear, Tensor x)
    {
        var h = _dropout > 0 && linear.training ? Dropout(x) : x;
        if (h.dtype == A.dtype) return F.linear(F.linear(h, A), B) * _scaling;
        return (F.linear(F.linear(h.to(A.dtype), A), B) * _scaling).to(x.dtype);
    }

    Tensor Dropout(Tensor x)
    {
        var keep = 1 - _dropout;
        using var mask = empty_like(x).bernoulli_(keep, generator: _generator).div_(keep);
        return x * mask;
    }

    /// <summary>scaling · B A, the update merging adds to W (out, in), in fp32.</summary>
    public Tensor Delta()
    {
        using var noGrad = no_grad();
        return B.to(float32).matmul(A.to(float32)).mul_(_scaling);
    }

    public void Dispose() { A.Dispose(); B.Dispose(); }
}

/// <summary>
/// Adapters attached to a model's linear modules. While attached, those modules compute W x + scaling · B A x
/// (the model looks its linears up here, see <see cref="Lora.Forward"/>); the base weights are frozen.
/// Saved alone in the Hugging Face PEFT layout; <see cref="MergeAndDetach"/> folds them into the base.
/// </summary>
public sealed class LoraAdapter : IDisposable
{
    public const string WeightsFile = "adapter_model.safetensors";
    public const string ConfigFile = "adapter_config.json";
    const string Prefix = "base_model.model.";

    readonly CausalLM _model;
    readonly List<(Linear Linear, LoraLayer Layer)> _layers = [];
    // By name: a dtype change (mixed precision's model.to) replaces the Parameter objects while adapters are attached.
    readonly Dictionary<string, bool> _wasTrainable = [];
    readonly long _seed;
    readonly Generator? _dropout;   // one stream for every layer's mask, reseeded per micro-batch (see BeginMicroBatch)
    bool _attached;

    public LoraOptions Options { get; }
    public IReadOnlyList<LoraLayer> Layers => _layers.Select(l => l.Layer).ToArray();

    LoraAdapter(CausalLM model, LoraOptions options, long seed)
    {
        _model = model;
        Options = options.Validate();
        _seed = seed;
        if (Options.Dropout > 0) _dropout = new Generator(Rng.Derive(seed, 0xD80F), model.parameters().First().device);
    }

    /// <summary>Reseeds the dropout stream from (seed, step, micro): a micro-batch's masks depend on nothing else, so a
    /// resumed training draws the masks an uninterrupted one would, with no generator state in the checkpoint.</summary>
    public void BeginMicroBatch(long step, int micro) => _dropout?.manual_seed((long)Rng.Derive(_seed, 0xD80F, step, micro));

    /// <summary>Attaches fresh adapters to every linear named in <see cref="LoraOptions.TargetModules"/> and freezes the
    /// model. A is drawn from a generator seeded by <paramref name="seed"/> (module order), B is zero.</summary>
    public static LoraAdapter Attach(CausalLM model, LoraOptions options, long seed)
    {
        var adapter = new LoraAdapter(model, options, seed);
        using var gen = new Generator(Rng.Derive(seed, 0x10AA));
        using var noGrad = no_grad();
        foreach (var (name, linear) in adapter.Targets())
        {
            var w = linear.weight!;
            var (outF, inF) = (w.shape[0], w.shape[1]);
            var bound = 1.0 / Math.Sqrt(inF);                                              // kaiming_uniform(a = sqrt 5) on (r, in)
            using var u = rand([options.Rank, inF], generator: gen, dtype: float32);
            // Adapters train in fp32 whatever the base's dtype (a frozen bf16 base keeps its memory, the update its precision).
            var a = nn.Parameter((u * (2 * bound) - bound).to(w.device).DetachFromDisposeScope());
            var b = nn.Parameter(zeros(outF, options.Rank, dtype: float32, device: w.device).DetachFromDisposeScope());
            adapter._layers.Add((linear, new LoraLayer(name, a, b, options.Scaling, options.Dropout, adapter._dropout)));
        }
        adapter.Connect();
        return adapter;
    }

    /// <summary>Loads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) onto the model.</summary>
    public static LoraAdapter Load(CausalLM model, string dir)
    {
        var options = ReadConfig(Path.Combine(dir, ConfigFile));
        var adapter = Attach(model, options, seed: 0);
        adapter.LoadWeights(dir);
        return adapter;
    }

    /// <summary>Copies A and B from a PEFT adapter_model.safetensors in <paramref name="dir"/>, checking every key and shape.</summary>
    public void LoadWeights(string dir)
    {
        var path = Path.Combine(dir, WeightsFile);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no adapter weights (expected a PEFT {WeightsFile})", path);
        var tensors = Safetensors.Load(path);
        try
        {
            var expected = NamedParameters().ToDictionary(p => p.Name, p => p.P);
            var unexpected = tensors.Keys.Where(k => !expected.ContainsKey(k)).ToArray();
            if (unexpected.Length > 0)
                throw new InvalidDataException($"{path}: unexpected tensor '{unexpected[0]}'" + (unexpected.Length > 1 ? $" (and {unexpected.Length - 1} more)" : "") +
                                               $"; adapter_config.json targets {string.Join(", ", Options.TargetModules)}");
            using var noGrad = no_grad();
            foreach (var (name, p) in expected)
            {
                if (!tensors.TryGetValue(name, out var t)) throw new InvalidDataException($"{path}: adapter lacks tensor '{name}'");
                if (!t.shape.SequenceEqual(p.shape))
                    throw new InvalidDataException($"{path}: tensor '{name}' has shape [{string.Join(", ", t.shape)}], the model and r = {Options.Rank} imply [{string.Join(", ", p.shape)}]");
                p.copy_(t.to(p.dtype));
            }
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>The model's linears whose last name segment is a target, in the model's order.</summary>
    IEnumerable<(string Name, Linear Linear)> Targets()
    {
        var found = new HashSet<string>();
        foreach (var (name, module) in _model.named_modules())
        {
            if (module is not Linear linear) continue;
            var last = name[(name.LastIndexOf('.') + 1)..];
            if (Options.TargetModules.Contains(Lora.AllLinear)) { if (name == "lm_head") continue; found.Add(Lora.AllLinear); }
            else if (!Options.TargetModules.Contains(last)) continue;
            found.Add(last);
            yield return (name, linear);
        }
        var missing = Options.TargetModules.Where(t => !found.Contains(t)).ToArray();
        if (missing.Length > 0) throw new ArgumentException($"lora: target module(s) {string.Join(", ", missing)} match no linear of the model");
    }

    void Connect()
    {
        foreach (var (name, p) in _model.named_parameters())
        {
            _wasTrainable[name] = p.requires_grad;
            p.requires_grad = false;
        }
        foreach (var (linear, layer) in _layers) Lora.Register(linear, layer);
        _attached = true;
    }

    /// <summary>A and B by their PEFT keys: base_model.model.{module}.lora_A.weight / lora_B.weight.</summary>
    public IEnumerable<(string Name, Parameter P)> NamedParameters() =>
        _layers.SelectMany(l => new[] { (Prefix + l.Layer.Module + ".lora_A.weight", l.Layer.A), (Prefix + l.Layer.Module + ".lora_B.weight", l.Layer.B) });

    /// <summary>Trained numbers: sum over adapted linears of r · (in + out).</summary>
    public long TrainableCount => _layers.Sum(l => l.Layer.A.numel() + l.Layer.B.numel());

    /// <summary>Writes the PEFT layout into <paramref name="dir"/> (an existing directory, e.g. inside an atomic write).</summary>
    public void SaveInto(string dir, string baseModel)
    {
        Safetensors.Save(Path.Combine(dir, WeightsFile), NamedParameters().Select(p => new KeyValuePair<string, Tensor>(p.Name, p.P)),
            new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), ConfigJson(baseModel));
    }

    /// <summary>Writes the adapter alone as a PEFT directory, atomically.</summary>
    public void Save(string dir, string baseModel) => AtomicFile.WriteDirectory(dir, tmp => SaveInto(tmp, baseModel));

    /// <summary>adapter_config.json with the fields PEFT's LoraConfig reads.</summary>
    public string ConfigJson(string baseModel)
    {
        var targets = new JsonArray();
        foreach (var t in Options.TargetModules.Order(StringComparer.Ordinal)) targets.Add(t);
        var json = new JsonObject
        {
            ["peft_type"] = "LORA", ["task_type"] = "CAUSAL_LM", ["base_model_name_or_path"] = baseModel,
            ["r"] = Options.Rank, ["lora_alpha"] = Options.Alpha, ["lora_dropout"] = Options.Dropout,
            ["target_modules"] = Options.TargetModules.Contains(Lora.AllLinear) ? JsonValue.Create(Lora.AllLinear) : targets, ["bias"] = "none", ["fan_in_fan_out"] = false, ["inference_mode"] = true,
            ["init_lora_weights"] = true, ["use_rslora"] = false, ["use_dora"] = false, ["modules_to_save"] = null,
            ["layers_to_transform"] = null, ["layers_pattern"] = null, ["rank_pattern"] = new JsonObject(), ["alpha_pattern"] = new JsonObject(),
            ["revision"] = null,
        };
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads r, lora_alpha, lora_dropout and target_modules of a PEFT adapter_config.json; refuses what this model cannot do.</summary>
    public static LoraOptions ReadConfig(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no adapter config (expected a PEFT {ConfigFile})", path);
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: not a JSON object"); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: invalid JSON at line {e.LineNumber + 1}: {e.Message}"); }
        string Need(string key) => json[key] is { } v ? v.ToJsonString() : throw new InvalidDataException($"{path}: missing field '{key}'");
        if (json["peft_type"]?.GetValue<string>() is { } type && type != "LORA") throw new InvalidDataException($"{path}: peft_type '{type}' is not LORA");
        if (json["use_dora"]?.GetValue<bool>() == true) throw new InvalidDataException($"{path}: DoRA adapters are not supported");
        if (json["use_rslora"]?.GetValue<bool>() == true) throw new InvalidDataException($"{path}: rsLoRA scaling (alpha / sqrt r) is not supported");
        if (json["rank_pattern"] is JsonObject rp && rp.Count > 0 || json["alpha_pattern"] is JsonObject ap && ap.Count > 0)
            throw new InvalidDataException($"{path}: per-module rank_pattern / alpha_pattern are not supported");
        Need("r"); Need("lora_alpha"); Need("target_modules");
        var targets = json["target_modules"] switch
        {
            JsonArray a => a.Select(n => n!.GetValue<string>()).ToArray(),
            JsonValue v when v.GetValue<string>() == Lora.AllLinear => [Lora.AllLinear],
            var other => throw new InvalidDataException($"{path}: target_modules {other!.ToJsonString()} is not a list of module names"),
        };
        return new LoraOptions
        {
            Rank = json["r"]!.GetValue<int>(), Alpha = json["lora_alpha"]!.GetValue<double>(),
            Dropout = json["lora_dropout"]?.GetValue<double>() ?? 0, TargetModules = targets,
        }.Validate();
    }

    /// <summary>Detaches the adapters: the linears compute W x again, and what was trainable before is trainable again.</summary>
    public void Detach()
    {
        if (!_attached) return;
        foreach (var (linear, _) in _layers) Lora.Unregister(linear);
        foreach (var (name, p) in _model.named_parameters())
            if (_wasTrainable.TryGetValue(name, out var was)) p.requires_grad = was;
        _attached = false;
    }

    /// <summary>W ← W + scaling · B A for every adapted linear (in fp32, stored in W's dtype), then detaches:
    /// the model alone now computes what the adapted model computed.</summary>
    public void MergeAndDetach()
    {
        using (no_grad())
        {
            foreach (var (linear, layer) in _layers)
            {
                var w = linear.weight!;
                using var delta = layer.Delta();
                using var merged = w.to(float32).add_(delta.to(w.device));
                w.copy_(merged.to(w.dtype));
            }
        }
        Detach();
    }

    public void Dispose()
    {
        Detach();
        _dropout?.Dispose();
        foreach (var (_, layer) in _layers) layer.Dispose();
    }
}

public static class Lora
{
    /// <summary>The linear modules an adapter may target (Hugging Face names, over every family: fused Phi-3 qkv_proj and
    /// gate_up_proj, GPT-2's c_attn, c_proj and c_fc), or "all-linear" for every linear but lm_head (as PEFT).</summary>
    public static IReadOnlyList<string> LinearNames { get; } =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj", "c_attn", "c_proj", "c_fc"];

    public const string AllLinear = "all-linear";

    static readonly ConditionalWeakTable<Linear, LoraLayer> Attached = new();

    internal static void Register(Linear linear, LoraLayer layer)
    {
        if (!Attached.TryAdd(linear, layer)) throw new InvalidOperationException($"lora: {layer.Module} already has an adapter attached; detach or merge it first");
    }

    internal static void Unregister(Linear linear) => Attached.Remove(linear);

    /// <summary>What the model calls for each of its linears: W x, plus the adapter's update when one is attached.</summary>
    public static Tensor Forward(Linear linear, Tensor x) =>
        Attached.TryGetValue(linear, out var layer) ? layer.Forward(linear, x) : linear.forward(x);

    /// <summary>
    /// From this many rows (batch × positions) up, <see cref="ForwardStacked"/> stacks; below it (generation, one
    /// position at a time) copying the weights would cost more than the one wider multiply saves.
    /// </summary>
    public const long StackRows = 64;

    /// <summary>
    /// Several linears that read the same input (q, k, v; gate, up) as one matrix multiply over their weights stacked
    /// by rows, its output split back per linear: one larger GEMM runs closer to the sgemm rate than several narrow
    /// ones. Stacking copies the weights, so it only pays when x has many rows (training, prefill); attached adapters
    /// add their updates per linear, as <see cref="Forward"/> does. Falls back to one multiply each when only some of
    /// the linears have a bias, or when x has fewer than <see cref="StackRows"/> rows.
    /// </summary>
    public static Tensor[] ForwardStacked(IReadOnlyList<Linear> linears, Tensor x)
    {
        var biases = linears.Select(l => l.bias).ToArray();
        var rows = x.numel() / x.shape[^1];
        if (rows < StackRows || (biases.Any(b => b is null) && biases.Any(b => b is not null)))
            return linears.Select(l => Forward(l, x)).ToArray();
        using var weights = cat(linears.Select(l => (Tensor)l.weight!).ToArray(), 0);
        using var bias = biases[0] is null ? null : cat(biases.Select(b => (Tensor)b!).ToArray(), 0);
        using var y = F.linear(x, weights, bias);
        var parts = y.split(linears.Select(l => l.weight!.shape[0]).ToArray(), -1);
        for (var i = 0; i < parts.Length; i++)
            if (Attached.TryGetValue(linears[i], out var layer))
            {
                using var part = parts[i];
                parts[i] = part + layer.Update(linears[i], x);
            }
        return parts;
    }
}
