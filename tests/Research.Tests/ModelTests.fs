module Research.Tests.ModelTests

open System.IO
open Expecto
open TorchSharp
open Research.Models
open Research.Data
open Research.Tests.TestUtil

let private noGrad () = torch.no_grad ()

[<Tests>]
let tests =
    testList "Model" [
        testCase "HF Llama tensor names, tied embeddings omit lm_head" <| fun _ ->
            use m = microModel 1L
            let names = m.named_parameters() |> Seq.map (fun struct (n, _) -> n) |> Set.ofSeq
            for expected in [ "model.embed_tokens.weight"; "model.layers.0.self_attn.q_proj.weight"; "model.layers.0.self_attn.k_proj.weight"
                              "model.layers.0.self_attn.v_proj.weight"; "model.layers.0.self_attn.o_proj.weight"; "model.layers.1.mlp.gate_proj.weight"
                              "model.layers.1.mlp.up_proj.weight"; "model.layers.1.mlp.down_proj.weight"; "model.layers.0.input_layernorm.weight"
                              "model.layers.0.post_attention_layernorm.weight"; "model.norm.weight" ] do
                Expect.contains names expected $"has {expected}"
            Expect.isFalse (names.Contains "lm_head.weight") "tied model has no lm_head"

        testCase "untied model has lm_head; GQA k/v shapes; parameter count by hand" <| fun _ ->
            let c = ModelConfig(VocabSize = 259, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, TieWordEmbeddings = false)
            use m = new CausalLM(c)
            let p = m.named_parameters() |> Seq.map (fun struct (n, t) -> n, t.shape) |> Map.ofSeq
            Expect.equal p["lm_head.weight"] [| 259L; 32L |] "lm_head"
            Expect.equal p["model.layers.0.self_attn.k_proj.weight"] [| 16L; 32L |] "k_proj: 2 kv heads x 8"
            Expect.equal p["model.layers.0.self_attn.q_proj.weight"] [| 32L; 32L |] "q_proj"
            // embed + lm_head + layers x (q, o: 32x32; k, v: 16x32; mlp: 3 x 32x64; 2 norms) + final norm
            let perLayer = 2 * 32 * 32 + 2 * 16 * 32 + 3 * 32 * 64 + 2 * 32
            Expect.equal (m.ParameterCount()) (int64 (2 * 259 * 32 + 2 * perLayer + 32)) "parameter count"

        testCase "causal: changing token t+1 leaves logits at positions <= t unchanged" <| fun _ ->
            use m = microModel 2L
            use _ng = noGrad ()
            let a = ids [ 5L; 17L; 99L; 3L; 250L; 42L; 7L; 8L ]
            let b = a.clone()
            b[0L, 5L] <- torch.tensor(200L)
            use la = m.Forward(a)
            use lb = m.Forward(b)
            Expect.isLessThan (maxAbsDiff (la.narrow(1L, 0L, 5L)) (lb.narrow(1L, 0L, 5L))) 1e-6 "positions 0..4 unchanged"
            Expect.isGreaterThan (maxAbsDiff (la.narrow(1L, 5L, 3L)) (lb.narrow(1L, 5L, 3L))) 1e-4 "positions 5.. changed"

        testCase "KV-cache forward equals full recomputation, position by position" <| fun _ ->
            use m = microModel 3L
            m.eval()
            use _ng = noGrad ()
            let seq = ids [ 1L; 2L; 3L; 4L; 5L; 6L; 7L; 8L; 9L; 10L ]
            use full = m.Forward(seq)
            use cache = new KvCache(m.Config, 1, 16, torch.float32, torch.CPU)
            use first = m.Forward(seq.narrow(1L, 0L, 4L), cache = cache)            // prefill 4
            use second = m.Forward(seq.narrow(1L, 4L, 3L), cache = cache)           // a chunk of 3 (explicit mask)
            let singles = [ for i in 7L .. 9L -> m.Forward(seq.narrow(1L, i, 1L), cache = cache) ]
            use pieced = torch.cat([| yield first; yield second; yield! singles |], 1L)
            Expect.isLessThan (maxAbsDiff pieced full) 1e-5 "cached logits = full logits"

        testCase "greedy generation with KV cache equals generation by full recomputation" <| fun _ ->
            use m = microModel 4L
            let prompt = [| 256; 72; 101; 108 |]
            let o = SamplingOptions.Greedy 20
            Expect.equal (Generation.Generate(m, prompt, o)) (Generation.GenerateWithoutCache(m, prompt, o)) "same tokens"

        testCase "seeded sampling is reproducible and differs across seeds" <| fun _ ->
            use m = microModel 5L
            let o = SamplingOptions(MaxNewTokens = 24, Temperature = 1.5, TopK = 50, TopP = 0.95, Seed = 11L)
            let a = Generation.Generate(m, [| 256 |], o)
            let b = Generation.Generate(m, [| 256 |], o)
            let c = Generation.Generate(m, [| 256 |], SamplingOptions(MaxNewTokens = 24, Temperature = 1.5, TopK = 50, TopP = 0.95, Seed = 11L))
            Expect.equal a b "same seed, same sample"
            Expect.equal a c "same options"
            let d = Generation.Generate(m, [| 256 |], SamplingOptions(MaxNewTokens = 24, Temperature = 1.5, TopK = 50, TopP = 0.95, Seed = 12L))
            Expect.notEqual a d "another seed, another sample"

        testCase "top-k and top-p filters keep exactly the expected tokens" <| fun _ ->
            // probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625
            let logits = torch.tensor([| 0.5; 0.25; 0.125; 0.0625; 0.0625 |], dtype = torch.float32).log()
            let kept (t: torch.Tensor) = [ for i in 0L .. 4L -> System.Single.IsFinite(t[i].item<float32>()) ]
            Expect.equal (kept (Generation.Filter(logits, 2, 1.0))) [ true; true; false; false; false ] "top-k 2"
            Expect.equal (kept (Generation.Filter(logits, 0, 0.7))) [ true; true; false; false; false ] "top-p 0.7 needs 0.5 + 0.25"
            Expect.equal (kept (Generation.Filter(logits, 0, 0.5))) [ true; false; false; false; false ] "top-p 0.5 is met by the first"
            Expect.equal (Generation.Pick(logits, SamplingOptions.Greedy 1)) 0L "greedy is argmax"

        testCase "RoPE rotates by position: relative attention scores are shift-invariant" <| fun _ ->
            let q = torch.randn(1L, 1L, 1L, 8L)
            let k = torch.randn(1L, 1L, 1L, 8L)
            let score (pq: int64) (pk: int64) =
                let struct (cq, sq) = Rope.Tables(torch.tensor([| pq |]), 8, 10000.0, torch.float32)
                let struct (ck, sk) = Rope.Tables(torch.tensor([| pk |]), 8, 10000.0, torch.float32)
                (Rope.Apply(q, cq, sq) * Rope.Apply(k, ck, sk)).sum().item<float32>()
            Expect.floatClose Accuracy.medium (float (score 7L 3L)) (float (score 12L 8L)) "same offset, same score"

        testCase "checkpoint directory round-trips weights bit-exactly with config and tokenizer" <| fun _ ->
            use m = microModel 6L
            let dir = Path.Combine(tempDir "ckpt", "model")
            Checkpoint.Save(dir, m, ByteTokenizer.Instance)
            for f in [ "model.safetensors"; "config.json"; "tokenizer_config.json"; "tokenizer.json" ] do
                Expect.isTrue (File.Exists(Path.Combine(dir, f))) $"{f} written"
            let config = File.ReadAllText(Path.Combine(dir, "config.json"))
            Expect.stringContains config "\"model_type\": \"llama\"" "model_type"
            Expect.stringContains config "\"num_key_value_heads\": 2" "HF field names"
            let struct (m2, tok) = Checkpoint.Load(dir)
            use m2 = m2
            Expect.equal tok.Name "byte" "tokenizer restored"
            for (struct (n, a)), (struct (_, b)) in Seq.zip (m.named_parameters()) (m2.named_parameters()) do
                Expect.isTrue (a.allclose(b, 0.0, 0.0)) $"{n} bit-exact"

        testCase "loads fp16/bf16 checkpoints made elsewhere, and shards with an index" <| fun _ ->
            use m = microModel 7L
            for dtype, name in [ torch.float16, "fp16"; torch.bfloat16, "bf16" ] do
                let dir = tempDir name
                m.Config.Save(Path.Combine(dir, "config.json"))
                ByteTokenizer.Instance.Save dir
                let tensors = Checkpoint.Weights(m) |> Seq.map (fun kv -> System.Collections.Generic.KeyValuePair(kv.Key, kv.Value.detach().``to``(dtype)))
                Safetensors.SaveSharded(dir, tensors, 20_000L)
                Expect.isTrue (File.Exists(Path.Combine(dir, "model.safetensors.index.json"))) "sharded"
                let struct (m2, _) = Checkpoint.Load(dir)
                use m2 = m2
                let w = m2.named_parameters() |> Seq.find (fun struct (n, _) -> n = "model.layers.0.mlp.up_proj.weight") |> fun struct (_, t) -> t
                let orig = m.named_parameters() |> Seq.find (fun struct (n, _) -> n = "model.layers.0.mlp.up_proj.weight") |> fun struct (_, t) -> t
                Expect.equal w.dtype torch.float32 "converted to the model's dtype"
                Expect.isLessThan (maxAbsDiff w orig) 0.01 $"{name} values close"

        testCase "loading names the tensor for a shape mismatch, a missing and an unexpected tensor" <| fun _ ->
            use m = microModel 8L
            let dir = tempDir "bad"
            m.Config.Save(Path.Combine(dir, "config.json"))
            ByteTokenizer.Instance.Save dir
            let good = Checkpoint.Weights(m) |> Seq.map (fun kv -> kv.Key, kv.Value.detach().clone()) |> Map.ofSeq
            let write (ts: Map<string, torch.Tensor>) =
                Safetensors.Save(Path.Combine(dir, "model.safetensors"), ts |> Seq.map (fun kv -> System.Collections.Generic.KeyValuePair(kv.Key, kv.Value)))
            write (good.Add("model.norm.weight", torch.ones(31L)))
            throwsWith<InvalidDataException> (fun () -> Checkpoint.Load(dir) |> ignore) [ "model.norm.weight"; "[31]" ] "shape"
            write (good.Remove "model.layers.1.mlp.down_proj.weight")
            throwsWith<InvalidDataException> (fun () -> Checkpoint.Load(dir) |> ignore) [ "model.layers.1.mlp.down_proj.weight" ] "missing"
            write (good.Add("model.layers.9.extra.weight", torch.ones(2L)))
            throwsWith<InvalidDataException> (fun () -> Checkpoint.Load(dir) |> ignore) [ "model.layers.9.extra.weight" ] "unexpected"

        testCase "config.json: HF names read back; bad values named" <| fun _ ->
            let dir = tempDir "cfg"
            let p = Path.Combine(dir, "config.json")
            File.WriteAllText(p, """{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":4,"rms_norm_eps":1e-6,"tie_word_embeddings":false,"eos_token_id":[2,3],"transformers_version":"4.50"}""")
            let c = ModelConfig.Load p
            Expect.equal (c.VocabSize, c.HiddenSize, c.NumKeyValueHeads, c.TieWordEmbeddings, c.EosTokenId) (100, 64, 4, false, System.Nullable 2) "fields"
            File.WriteAllText(p, """{"model_type":"llama","hidden_size":64,"num_attention_heads":4,"num_key_value_heads":3}""")
            throwsWith<InvalidDataException> (fun () -> ModelConfig.Load p |> ignore) [ "num_key_value_heads"; "config.json" ] "kv heads"
            File.WriteAllText(p, """{"model_type":"bert"}""")
            throwsWith<InvalidDataException> (fun () -> ModelConfig.Load p |> ignore) [ "model_type 'bert'"; "qwen3"; "gemma3_text"; "gpt2" ] "model type"
            File.WriteAllText(p, """{"model_type":"llama","rope_scaling":{"rope_type":"longrope","factor":2.0}}""")
            throwsWith<InvalidDataException> (fun () -> ModelConfig.Load p |> ignore) [ "rope type 'longrope'"; "yarn" ] "rope type"
    ]
