/// Every supported Hugging Face family against an independent reference: a tiny random checkpoint in HF layout
/// (written here), its logits from our one decoder and from tests/reference/hf_forward.py (Debian's python3-torch,
/// written from transformers' modeling code, not from ours).
module Research.Tests.FamilyTests

open System
open System.IO
open System.Diagnostics
open System.Text.Json.Nodes
open TorchSharp
open Expecto
open Research.Models
open Research.Tests.TestUtil

/// Runs the reference forward pass on a checkpoint directory: logits (B, T, V) as float32.
let referenceLogits (dir: string) (ids: int64[][]) =
    ensurePythonRefs.Force()
    let request = JsonObject()
    request["model_dir"] <- JsonValue.Create dir
    let rows = JsonArray()
    for r in ids do rows.Add(JsonArray(r |> Array.map (fun i -> JsonValue.Create i :> JsonNode)))
    request["input_ids"] <- rows
    let out = Path.Combine(dir, "reference-logits.bin")
    request["out"] <- JsonValue.Create out
    request["dtype"] <- JsonValue.Create "float64"
    let reqPath = Path.Combine(dir, "reference-request.json")
    File.WriteAllText(reqPath, request.ToJsonString())
    let script = Path.Combine(repoRoot, "tests", "reference", "hf_forward.py")
    let psi = ProcessStartInfo("/usr/bin/python3", $"\"{script}\" \"{reqPath}\"",
                               RedirectStandardOutput = true, RedirectStandardError = true)
    use p = Process.Start psi
    let stdout = p.StandardOutput.ReadToEndAsync()
    let stderr = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    if p.ExitCode <> 0 then failwithf "hf_forward.py failed (%d) on %s: %s%s" p.ExitCode dir stdout.Result stderr.Result
    let bytes = File.ReadAllBytes out
    let floats = Array.zeroCreate<float32> (bytes.Length / 4)
    Buffer.BlockCopy(bytes, 0, floats, 0, bytes.Length)
    let b, t = int64 ids.Length, int64 ids[0].Length
    torch.tensor(floats).view(b, t, -1L)

/// A model of the config, every weight drawn large enough that each part of the forward pass moves the logits
/// (norm weights around 1, or around 0 for Gemma's 1 + w), saved in HF layout in the given dtype and shard bound.
let writeRandomCheckpoint (name: string) (config: JsonObject) (seed: int64) (dtype: torch.ScalarType) (maxShard: int64 option) =
    let dir = tempDir name
    let cfg = ModelConfig.FromJson(config, null)
    use model = new CausalLM(cfg, seed)
    use gen = new torch.Generator(uint64 (seed + 1L))
    do
        use _ = torch.no_grad()
        for struct (n, p) in model.named_parameters() do
            let isNorm = n.Contains "norm" || n.Contains "ln_"
            p.normal_(0.0, (if isNorm then 0.2 else 0.15), gen) |> ignore
            if isNorm && n.EndsWith "weight" && cfg.Family.Norm <> NormKind.RmsOffset then p.add_(torch.tensor 1.0f) |> ignore
    let tensors =
        Checkpoint.Weights(model)
        |> Seq.map (fun kv -> Collections.Generic.KeyValuePair(kv.Key, kv.Value.``to``(dtype).clone()))
        |> Seq.toList
    match maxShard with
    | Some bound -> Safetensors.SaveSharded(dir, tensors, bound)
    | None -> Safetensors.Save(Path.Combine(dir, Checkpoint.WeightsFile), tensors)
    File.WriteAllText(Path.Combine(dir, Checkpoint.ConfigFile), config.ToJsonString())
    dir

let parse (json: string) = JsonNode.Parse(json).AsObject()

/// Token ids 0..vocab-1 drawn with a fixed generator: (B, T).
let randomIds (vocab: int) (b: int) (t: int) (seed: int) =
    let rng = Random seed
    Array.init b (fun _ -> Array.init t (fun _ -> int64 (rng.Next vocab)))

/// Our logits for the checkpoint equal the reference's within a relative tolerance of the logits' scale.
let expectMatchesReference (name: string) (json: string) (dtype: torch.ScalarType) (maxShard: int64 option) (t: int) =
    let config = parse json
    let dir = writeRandomCheckpoint name config 7L dtype maxShard
    let vocab = config["vocab_size"].GetValue<int>()
    let ids = randomIds vocab 2 t 11
    use model = Checkpoint.LoadModel dir
    use _ = torch.no_grad()
    use input = torch.tensor(Array.concat ids, dtype = torch.int64).view(2L, int64 t)
    use ours = model.Forward(input)
    use theirs = referenceLogits dir ids
    Expect.sequenceEqual ours.shape theirs.shape $"{name}: logits shape"
    let scale = theirs.abs().max().item<float32>() |> float
    let diff = maxAbsDiff ours theirs
    Expect.isGreaterThan scale 0.5 $"{name}: logits are not trivially small (max |logit| {scale})"
    Expect.isLessThan (diff / scale) 2e-4 $"{name}: max |ours - reference| = {diff} against max |logit| {scale}"

let llama = """{"model_type":"llama","architectures":["LlamaForCausalLM"],"vocab_size":97,"hidden_size":64,"intermediate_size":96,
  "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,"rms_norm_eps":1e-5,
  "rope_theta":10000.0,"tie_word_embeddings":false,"attention_bias":true,"mlp_bias":true,"hidden_act":"silu","rope_scaling":ROPE,
  "torch_dtype":"float32","transformers_version":"4.56.0","bos_token_id":1,"eos_token_id":2}"""

let withRope (rope: string) = llama.Replace("ROPE", rope)

let cases = [
    "llama, plain RoPE, biases, GQA, untied, sharded", withRope "null", torch.float32, Some 20_000L, 12
    "llama, linear RoPE, tied", (withRope """{"rope_type":"linear","factor":2.0}""").Replace("\"tie_word_embeddings\":false", "\"tie_word_embeddings\":true"), torch.float32, None, 12
    "llama, dynamic RoPE past max_position_embeddings", (withRope """{"type":"dynamic","factor":2.0}""").Replace("\"max_position_embeddings\":64", "\"max_position_embeddings\":16"), torch.float32, None, 24
    "llama, llama3 RoPE", withRope """{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8}""", torch.bfloat16, None, 12
    "llama, yarn RoPE", withRope """{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":16,"beta_fast":32,"beta_slow":1}""", torch.float32, None, 20
    "mistral, sliding window 5",
        """{"model_type":"mistral","vocab_size":97,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":1,"max_position_embeddings":64,"rms_norm_eps":1e-5,"rope_theta":10000.0,"sliding_window":5,"tie_word_embeddings":false}""", torch.float16, None, 14
    "qwen2, q/k/v biases",
        """{"model_type":"qwen2","vocab_size":97,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":2,"max_position_embeddings":64,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"use_sliding_window":false,
            "sliding_window":4,"max_window_layers":1,"tie_word_embeddings":true}""", torch.bfloat16, None, 12
    "qwen3, q/k norms, explicit head_dim",
        """{"model_type":"qwen3","vocab_size":97,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":2,"head_dim":24,"max_position_embeddings":64,"rms_norm_eps":1e-6,"rope_theta":1000000.0,
            "attention_bias":false,"use_sliding_window":false,"tie_word_embeddings":true}""", torch.bfloat16, None, 12
    "gemma, (1 + w) norms, scaled embeddings, GeGLU",
        """{"model_type":"gemma","vocab_size":97,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":1,"head_dim":16,"max_position_embeddings":64,"rms_norm_eps":1e-6,"rope_theta":10000.0,
            "hidden_act":"gelu_pytorch_tanh","hidden_activation":"gelu_pytorch_tanh"}""", torch.float32, None, 12
    "gemma2, soft-capping, sandwich norms, alternating windows",
        """{"model_type":"gemma2","vocab_size":97,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":4,"num_attention_heads":4,
            "num_key_value_heads":2,"head_dim":16,"max_position_embeddings":64,"rms_norm_eps":1e-6,"rope_theta":10000.0,
            "hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":24,"sliding_window":4,"attn_logit_softcapping":5.0,
            "final_logit_softcapping":3.0}""", torch.float32, None, 12
    "gemma3_text, q/k norms, local and global RoPE bases",
        """{"model_type":"gemma3_text","vocab_size":97,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":4,"num_attention_heads":4,
            "num_key_value_heads":2,"head_dim":16,"max_position_embeddings":64,"rms_norm_eps":1e-6,"rope_theta":1000000.0,
            "rope_local_base_freq":10000.0,"hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":16,"sliding_window":4,
            "sliding_window_pattern":3,"rope_scaling":{"rope_type":"linear","factor":8.0},"final_logit_softcapping":null,
            "attn_logit_softcapping":null}""", torch.bfloat16, None, 12
    "phi3, fused qkv_proj and gate_up_proj",
        """{"model_type":"phi3","vocab_size":97,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":2,"max_position_embeddings":64,"original_max_position_embeddings":64,"rms_norm_eps":1e-5,
            "rope_theta":10000.0,"rope_scaling":null,"sliding_window":null,"tie_word_embeddings":false}""", torch.float32, None, 12
    "gpt2, learned positions, Conv1D weights, LayerNorm",
        """{"model_type":"gpt2","architectures":["GPT2LMHeadModel"],"vocab_size":97,"n_embd":64,"n_layer":2,"n_head":4,"n_positions":32,
            "n_inner":null,"layer_norm_epsilon":1e-5,"activation_function":"gelu_new","bos_token_id":96,"eos_token_id":96}""", torch.float32, None, 12
]

[<Tests>]
let tests =
    testList "Families" ([
        for name, json, dtype, shard, t in cases ->
            testCase $"{name}: logits match the independent reference" <| fun _ ->
                expectMatchesReference (name.Split(',')[0]) json dtype shard t ] @ [

        testCase "sliding-window and soft-capped families: KV-cache forward equals full recomputation" <| fun _ ->
            for _, json, _, _, _ in cases |> List.filter (fun (n, _, _, _, _) -> n.StartsWith "mistral" || n.StartsWith "gemma2" || n.StartsWith "gemma3" || n.StartsWith "gpt2") do
                let cfg = ModelConfig.FromJson(parse json, null)
                use model = new CausalLM(cfg, 3L)
                use _ = torch.no_grad()
                let ids = randomIds cfg.VocabSize 1 12 5 |> Array.concat
                use full = model.Forward(torch.tensor(ids, dtype = torch.int64).unsqueeze(0L))
                use cache = new KvCache(cfg, 1, 12, torch.float32, torch.CPU)
                use first = model.Forward(torch.tensor(ids[0..6], dtype = torch.int64).unsqueeze(0L), cache = cache)
                Expect.isLessThan (maxAbsDiff first (full.narrow(1L, 0L, 7L))) 1e-5 $"{cfg.ModelType}: prefill"
                for i in 7 .. 11 do
                    use step = model.Forward(torch.tensor([| ids[i] |], dtype = torch.int64).unsqueeze(0L), cache = cache)
                    Expect.isLessThan (maxAbsDiff step (full.narrow(1L, int64 i, 1L))) 1e-5 $"{cfg.ModelType}: position {i}"

        testCase "a loaded config.json saves back with every key; weights keep names, dtype and shards" <| fun _ ->
            let name, json, _, _, _ = cases[0]
            let dir = writeRandomCheckpoint "faithful" (parse json) 5L torch.bfloat16 (Some 20_000L)
            use model = Checkpoint.LoadModel dir
            let out = Path.Combine(tempDir "faithful-out", "ckpt")
            Research.Runs.AtomicFile.WriteDirectory(out, fun tmp ->
                Checkpoint.SaveWeights(tmp, model)
                model.Config.Save(Path.Combine(tmp, Checkpoint.ConfigFile)))
            let before = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, Checkpoint.ConfigFile)))
            let after = JsonNode.Parse(File.ReadAllText(Path.Combine(out, Checkpoint.ConfigFile)))
            Expect.isTrue (JsonNode.DeepEquals(before, after)) $"{name}: config.json unchanged: {after.ToJsonString()}"
            Expect.isTrue (File.Exists(Path.Combine(out, Safetensors.IndexFileName))) "still sharded"
            let a = Safetensors.LoadDirectory dir
            let b = Safetensors.LoadDirectory out
            Expect.sequenceEqual (b.Keys |> Seq.sort) (a.Keys |> Seq.sort) "same tensor names"
            for KeyValue(k, t) in a do
                Expect.equal b[k].dtype t.dtype $"{k} dtype"
                Expect.equal (maxAbsDiff (b[k].``to``(torch.float64)) (t.``to``(torch.float64))) 0.0 $"{k} bit-identical"

        testCase "GPT-2 without the transformer. prefix (as OpenAI published it) loads and saves back unprefixed" <| fun _ ->
            let _, json, _, _, _ = cases |> List.find (fun (n, _, _, _, _) -> n.StartsWith "gpt2")
            let dir = writeRandomCheckpoint "gpt2-bare" (parse json) 9L torch.float32 None
            let path = Path.Combine(dir, Checkpoint.WeightsFile)
            let stored = Safetensors.Load path
            let bare = stored |> Seq.map (fun kv -> Collections.Generic.KeyValuePair(kv.Key.Replace("transformer.", ""), kv.Value)) |> Seq.toList
            Safetensors.Save(path, bare)
            use model = Checkpoint.LoadModel dir
            use _ = torch.no_grad()
            let ids = randomIds 97 2 12 11
            use ours = model.Forward(torch.tensor(Array.concat ids, dtype = torch.int64).view(2L, 12L))
            use theirs = referenceLogits dir ids
            Expect.isLessThan (maxAbsDiff ours theirs / (theirs.abs().max().item<float32>() |> float)) 2e-4 "unprefixed keys: same logits"
            let out = tempDir "gpt2-bare-out"
            Checkpoint.SaveWeights(out, model)
            let keys = (Safetensors.Load(Path.Combine(out, Checkpoint.WeightsFile))).Keys
            Expect.isTrue (keys |> Seq.forall (fun k -> not (k.StartsWith "transformer."))) "saved unprefixed, as loaded"
            Expect.contains keys "h.0.attn.c_attn.weight" "Conv1D names kept"

        testCase "bad checkpoints are named: unknown family, shape against config.json, missing tensor, no tokenizer" <| fun _ ->
            let _, json, _, _, _ = cases |> List.find (fun (n, _, _, _, _) -> n.StartsWith "qwen3")
            let dir = writeRandomCheckpoint "bad" (parse json) 1L torch.float32 None
            throwsWith<Research.Data.TokenizerException> (fun () -> Checkpoint.Load dir |> ignore) [ dir; "tokenizer" ] "weights-only directory named for a stage that needs a tokenizer"
            let cfg = parse json
            cfg["head_dim"] <- JsonValue.Create 16
            File.WriteAllText(Path.Combine(dir, Checkpoint.ConfigFile), cfg.ToJsonString())
            throwsWith<InvalidDataException> (fun () -> Checkpoint.LoadModel dir |> ignore) [ "q_proj.weight"; "shape"; "config.json" ] "shape mismatch"
            cfg["head_dim"] <- JsonValue.Create 24
            cfg["model_type"] <- JsonValue.Create "qwen2"
            File.WriteAllText(Path.Combine(dir, Checkpoint.ConfigFile), cfg.ToJsonString())
            throwsWith<InvalidDataException> (fun () -> Checkpoint.LoadModel dir |> ignore) [ "_norm.weight"; "qwen2" ] "a qwen3 tensor in a qwen2 model"
            cfg["model_type"] <- JsonValue.Create "falcon"
            File.WriteAllText(Path.Combine(dir, Checkpoint.ConfigFile), cfg.ToJsonString())
            throwsWith<InvalidDataException> (fun () -> Checkpoint.LoadModel dir |> ignore) [ "falcon"; "supported"; "gemma2" ] "unknown family"
    ])
