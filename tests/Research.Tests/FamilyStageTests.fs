/// Every stage on Hugging Face families other than Llama, through the executor: tiny random checkpoints in HF layout with a
/// real tokenizer (Mistral's SentencePiece files, 32,000 tokens, its chat_template) go through adapt, tune and align (both
/// rendered through the model's own template), a TIES merge, LoRA on fused and Conv1D linears with a bf16 base, and
/// distillation between two families sharing the tokenizer.
module Research.Tests.FamilyStageTests

open System
open System.IO
open System.Text.Json.Nodes
open TorchSharp
open Expecto
open Research
open Research.Data
open Research.Models
open Research.Pipelines
open Research.Stages
open Research.Stages.Merge
open Research.Tests.TestUtil

let private vocab = 32000

/// Tiny configs of each family (vocab of the Mistral tokenizer: bos 1, eos 2).
let private configs =
    [ "qwen3", """{"model_type":"qwen3","vocab_size":32000,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"head_dim":16,"max_position_embeddings":128,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true,
        "bos_token_id":1,"eos_token_id":2}"""
      "gemma2", """{"model_type":"gemma2","vocab_size":32000,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":2,
        "num_key_value_heads":1,"head_dim":16,"max_position_embeddings":128,"rms_norm_eps":1e-6,"rope_theta":10000.0,"hidden_activation":"gelu_pytorch_tanh",
        "query_pre_attn_scalar":16,"sliding_window":8,"attn_logit_softcapping":50.0,"final_logit_softcapping":30.0,"bos_token_id":1,"eos_token_id":2}"""
      "phi3", """{"model_type":"phi3","vocab_size":32000,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"max_position_embeddings":128,"original_max_position_embeddings":128,"rms_norm_eps":1e-5,"rope_theta":10000.0,
        "rope_scaling":null,"sliding_window":null,"tie_word_embeddings":false,"bos_token_id":1,"eos_token_id":2}"""
      "gpt2", """{"model_type":"gpt2","architectures":["GPT2LMHeadModel"],"vocab_size":32000,"n_embd":32,"n_layer":2,"n_head":4,"n_positions":128,
        "n_inner":null,"layer_norm_epsilon":1e-5,"activation_function":"gelu_new","bos_token_id":1,"eos_token_id":2}"""
      "mistral", """{"model_type":"mistral","vocab_size":32000,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":1,"max_position_embeddings":128,"rms_norm_eps":1e-5,"rope_theta":10000.0,"sliding_window":8,"tie_word_embeddings":false,
        "bos_token_id":1,"eos_token_id":2}"""
      "llama", """{"model_type":"llama","vocab_size":32000,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"max_position_embeddings":128,"rms_norm_eps":1e-5,"rope_theta":500000.0,"tie_word_embeddings":false,"attention_bias":true,
        "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":32},
        "bos_token_id":1,"eos_token_id":2}"""
      "qwen2", """{"model_type":"qwen2","vocab_size":32000,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"max_position_embeddings":128,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"use_sliding_window":false,
        "tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2}"""
      "gemma", """{"model_type":"gemma","vocab_size":32000,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":2,
        "num_key_value_heads":1,"head_dim":16,"max_position_embeddings":128,"rms_norm_eps":1e-6,"rope_theta":10000.0,
        "hidden_act":"gelu_pytorch_tanh","hidden_activation":"gelu_pytorch_tanh","bos_token_id":1,"eos_token_id":2}"""
      "gemma3_text", """{"model_type":"gemma3_text","vocab_size":32000,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":3,"num_attention_heads":2,
        "num_key_value_heads":1,"head_dim":16,"max_position_embeddings":128,"rms_norm_eps":1e-6,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,
        "hidden_activation":"gelu_pytorch_tanh","query_pre_attn_scalar":16,"sliding_window":8,"sliding_window_pattern":3,
        "final_logit_softcapping":null,"attn_logit_softcapping":null,"bos_token_id":1,"eos_token_id":2}""" ]

/// A random checkpoint of the family with the tokenizer files beside it: what a researcher downloads from the Hub.
let private hubDir (family: string) (seed: int64) =
    let json = configs |> List.find (fst >> (=) family) |> snd
    let dir = FamilyTests.writeRandomCheckpoint $"hub-{family}" (FamilyTests.parse json) seed torch.float32 None
    HfTokenizerTests.copyMistralWithTemplate dir

let private world = World.quick 80 5

/// Conversations (tune) and preference pairs with messages prompts (align), written once.
let private dataDir =
    lazy (
        let dir = tempDir "family-data"
        let msg (role: string) (content: string) = JsonObject([ Collections.Generic.KeyValuePair("role", JsonValue.Create role :> JsonNode)
                                                                Collections.Generic.KeyValuePair("content", JsonValue.Create content :> JsonNode) ])
        let facts = [ "a coupon", "the interest a bond pays"; "a yield", "the return on a bond"; "a dividend", "a share of profit paid to owners"
                      "a bond", "a loan you can trade"; "equity", "what owners hold"; "a ledger", "the book of accounts"
                      "an audit", "a check of the books"; "a margin", "profit over revenue"; "a hedge", "a bet against a risk"
                      "liquidity", "how fast an asset sells"; "a share", "a part of a company"; "a loan", "money lent for interest" ]
        let sft = [ for q, a in facts ->
                        let o = JsonObject()
                        o["messages"] <- JsonArray(msg "user" $"What is {q}?", msg "assistant" $"It is {a}.")
                        o.ToJsonString() ]
        let prefs = [ for i, (q, a) in List.indexed facts ->
                          let o = JsonObject()
                          o["prompt"] <- JsonArray(msg "user" $"Define {q}.")
                          o["chosen"] <- JsonValue.Create $"{a}."
                          o["rejected"] <- JsonValue.Create $"{snd facts[(i + 1) % facts.Length]}."
                          o.ToJsonString() ]
        File.WriteAllLines(Path.Combine(dir, "sft.jsonl"), sft)
        File.WriteAllLines(Path.Combine(dir, "prefs.jsonl"), prefs)
        dir)

let private quick (s: Step) = s |> Stage.steps 6 |> Stage.lr 3e-3 |> Stage.logEvery 1 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0 |> Stage.batch 4

let private run (ws: string) (e: Experiment) = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e

let private finalOf (r: ExperimentResult) (name: string) = Path.Combine(r.Runs[0].Node(name).Checkpoint)

/// The train losses a stage logged, in step order.
let private trainLosses (nodeDir: string) =
    File.ReadAllLines(Path.Combine(nodeDir, "metrics.jsonl"))
    |> Array.map JsonNode.Parse
    |> Array.filter (fun n -> n["kind"].GetValue<string>() = "train")
    |> Array.map (fun n -> n["loss"].GetValue<float>())

let private nodeDirOf (checkpoint: string) = Path.GetDirectoryName(Path.GetFullPath checkpoint)

/// source -> adapt -> TIES merge of [tune (model template); align (model template)] against the adapted model.
let private pipeline (family: string) (source: string) =
    let data = dataDir.Force()
    let ad = adapt (domain world.Finance) |> quick |> Stage.blockLength 32 |> Stage.named "adapt"
    let tu = tune (Path.Combine(data, "sft.jsonl")) |> quick |> Stage.blockLength 48 |> Stage.template "model" |> Stage.named "tune"
    let al =
        align (Path.Combine(data, "prefs.jsonl")) |> quick |> Stage.lr 1e-3
        |> Stage.template "model" |> Align.generations 0 64
        |> Align.maxLength 48 |> Align.maxPromptLength 24 |> Stage.named "align"
    let mg = mergeBranches (Ties { density = 0.5 }) [ tu; al ] |> Stage.named "merge"
    Experiment.create $"stages-{family}" (fromCheckpoint source) (ad >=> mg) |> Experiment.seed 5L

let private sameBytes (a: string) (b: string) = File.ReadAllBytes a = File.ReadAllBytes b

let private stagesRunOn (family: string) =
    testCase $"{family}: adapt, tune and align through its chat template, TIES merge; every output reloads as {family}" <| fun _ ->
        let source = hubDir family 3L
        let ws = tempDir $"stages-{family}"
        let r = run ws (pipeline family source)
        Expect.equal [ for n in r.Runs[0].Nodes -> n.Name, n.Status ] [ "checkpoint", "done"; "adapt", "done"; "tune", "done"; "align", "done"; "merge", "done" ] "every stage ran"
        for stage in [ "adapt"; "tune"; "align"; "merge" ] do
            let dir = finalOf r stage
            let config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, Checkpoint.ConfigFile)))
            Expect.equal (config["model_type"].GetValue<string>()) family $"{stage}: config.json keeps the family"
            Expect.isTrue (sameBytes (Path.Combine(source, Tokenizers.JsonFile)) (Path.Combine(dir, Tokenizers.JsonFile))) $"{stage}: tokenizer.json copied byte-identical"
            let struct (model, tokenizer) = Checkpoint.Load dir
            use _ = model
            Expect.equal model.Config.ModelType family $"{stage}: loads as {family}"
            Expect.equal tokenizer.VocabSize vocab $"{stage}: the Mistral tokenizer"
        for stage in [ "adapt"; "tune" ] do
            let losses = trainLosses (nodeDirOf (finalOf r stage))
            Expect.isTrue (losses |> Array.forall Double.IsFinite) $"{stage}: finite losses"
            Expect.isLessThan losses[losses.Length - 1] losses[0] $"{stage}: the loss falls over 6 steps ({losses[0]:F3} -> {losses[losses.Length - 1]:F3})"
        let alignLosses = trainLosses (nodeDirOf (finalOf r "align"))
        Expect.isTrue (alignLosses |> Array.forall Double.IsFinite) "align: finite losses"
        Expect.floatClose Accuracy.medium alignLosses[0] (Math.Log 2.0) "align: DPO starts at log 2 (the policy is its reference)"
        // The tune data went through Mistral's template: prompts in [INST] ... [/INST], answers trained with </s>.
        let report = JsonNode.Parse(File.ReadAllText(Path.Combine(nodeDirOf (finalOf r "tune"), "tune_report.json")))
        Expect.equal (report["template"].GetValue<string>()) "model" "tune rendered through the model's template"
        Directory.Delete(ws, true)

let private packedEqualsAlone (family: string) =
    testCase $"{family}: a packed row (positions restart, block-diagonal mask) gives each sample its own logits" <| fun _ ->
        use model = Checkpoint.LoadModel(hubDir family 9L)
        use _ = torch.no_grad()
        let a = [| 1L; 400L; 1200L; 77L; 9000L; 31000L; 5L |]
        let b = [| 1L; 15L; 16L; 17L; 18L; 19L; 20L; 21L; 22L; 23L; 24L; 25L |]   // longer than the sliding windows (8)
        use packed = torch.tensor(Array.append a b, dtype = torch.int64).unsqueeze 0L
        let n, m = int64 a.Length, int64 b.Length
        use positions = torch.cat([| torch.arange(n, dtype = torch.int64); torch.arange(m, dtype = torch.int64) |], 0L).unsqueeze 0L
        use mask = torch.zeros([| 1L; 1L; n + m; n + m |], dtype = torch.ScalarType.Bool)
        mask[torch.TensorIndex.Single 0L, torch.TensorIndex.Single 0L, torch.TensorIndex.Slice(0L, n), torch.TensorIndex.Slice(0L, n)] <- torch.ones(n, n, dtype = torch.ScalarType.Bool).tril()
        mask[torch.TensorIndex.Single 0L, torch.TensorIndex.Single 0L, torch.TensorIndex.Slice(n, n + m), torch.TensorIndex.Slice(n, n + m)] <- torch.ones(m, m, dtype = torch.ScalarType.Bool).tril()
        use together = model.Forward(packed, positions, mask)
        use alone = model.Forward(torch.tensor(b, dtype = torch.int64).unsqueeze 0L)
        let diff = maxAbsDiff (together.narrow(1L, n, m)) alone
        Expect.isLessThan diff 1e-4 $"{family}: second sample's logits, packed against alone (max diff {diff})"

[<Tests>]
let tests =
    // In the in-process group (Groups.inProcess): run on several threads at once beside the rest of the parallel suite,
    // one full run crashed natively (SIGSEGV in c10::intrusive_ptr<TensorImpl>::retain_ on a thread-pool thread; the same
    // crash was seen once in a single-threaded script process), so they never train beside another in-process list.
    testSequencedGroup Groups.inProcess <| testList "FamilyStages" [
        for family, _ in configs do
            stagesRunOn family
            packedEqualsAlone family

        testCase "LoRA on phi3's fused qkv_proj/gate_up_proj and gpt2's Conv1D c_attn/c_fc, bf16 base: fp32 adapters, merged final/" <| fun _ ->
            for family, targets in [ "phi3", [ "qkv_proj"; "gate_up_proj" ]; "gpt2", [ "c_attn"; "c_fc" ] ] do
                let source = hubDir family 4L
                let ws = tempDir $"lora-{family}"
                let step = tune (Path.Combine(dataDir.Force(), "sft.jsonl")) |> quick |> Stage.lr 1e-2 |> Stage.blockLength 48 |> Stage.template "model"
                           |> Stage.forceBf16 |> Stage.lora (lora 4 8.0 |> loraTargets targets) |> Stage.named "tune"
                let r = run ws (Experiment.create $"lora-{family}" (fromCheckpoint source) step |> Experiment.seed 2L)
                let nodeDir = nodeDirOf (finalOf r "tune")
                let adapter = Safetensors.Load(Path.Combine(nodeDir, "adapter", LoraAdapter.WeightsFile))
                Expect.isNonEmpty adapter.Keys $"{family}: adapter tensors"
                for KeyValue(k, t) in adapter do
                    Expect.equal t.dtype torch.float32 $"{family}: adapter {k} is float32"
                    Expect.isTrue (targets |> List.exists (fun m -> k.Contains $".{m}.")) $"{family}: {k} is on a targeted module"
                    t.Dispose()
                let losses = trainLosses nodeDir
                Expect.isLessThan losses[losses.Length - 1] losses[0] $"{family}: LoRA on a bf16 base lowers the loss ({losses[0]:F3} -> {losses[losses.Length - 1]:F3})"
                use before = Checkpoint.LoadModel source
                use after = Checkpoint.LoadModel(finalOf r "tune")
                let changed =
                    Seq.zip (Checkpoint.Weights before) (Checkpoint.Weights after)
                    |> Seq.filter (fun (x, y) -> maxAbsDiff x.Value y.Value > 0.0) |> Seq.map (fun (x, _) -> x.Key) |> Seq.toList
                Expect.isNonEmpty changed $"{family}: the merged model differs"
                for k in changed do
                    Expect.isTrue (targets |> List.exists (fun m -> k.Contains $".{m}.")) $"{family}: only targeted weights change (found {k})"
                Directory.Delete(ws, true)

        testCase "distill a phi3 student from a qwen3 teacher sharing the tokenizer; a teacher with another tokenizer is refused" <| fun _ ->
            let student = hubDir "phi3" 5L
            let teacher = hubDir "qwen3" 6L
            let ws = tempDir "distill-families"
            let step = distill (fromCheckpoint teacher |> Stage.named "teacher") world.Finance |> quick |> Stage.blockLength 32 |> Stage.named "distill"
            let r = run ws (Experiment.create "distill-families" (fromCheckpoint student) step |> Experiment.seed 3L)
            let nodeDir = nodeDirOf (finalOf r "distill")
            let rows = File.ReadAllLines(Path.Combine(nodeDir, "metrics.jsonl")) |> Array.map JsonNode.Parse |> Array.filter (fun n -> n["kind"].GetValue<string>() = "train")
            let kd = rows |> Array.map (fun n -> n["kd"].GetValue<float>())
            Expect.isLessThan kd[kd.Length - 1] kd[0] $"the student moves toward the teacher (kd {kd[0]:F4} -> {kd[kd.Length - 1]:F4})"
            use m = Checkpoint.LoadModel(finalOf r "distill")
            Expect.equal m.Config.ModelType "phi3" "the student stays phi3"
            // A qwen3 teacher with the real Qwen3 tokenizer: same logit count, different vocabulary.
            let qwenTeacher = FamilyTests.writeRandomCheckpoint "qwen-teacher" (FamilyTests.parse (snd configs[0])) 6L torch.float32 None
            for f in Directory.GetFiles(HfTokenizerTests.dirOf "qwen3") do File.Copy(f, Path.Combine(qwenTeacher, Path.GetFileName f))
            throwsWith<InvalidDataException> (fun () -> Research.Stages.DistillExecutor.CheckSameTokenizer("distill", student, qwenTeacher))
                [ "must share a tokenizer"; "token id"; qwenTeacher ] "the vocabularies' first difference is named"
            Directory.Delete(ws, true)

        testCase "scripts/hf-model.fsx (docs/models.md's worked example): a real tokenizer to a merged checkpoint" <| fun _ ->
            let tok = HfTokenizerTests.copyMistralWithTemplate (tempDir "example-tokenizer")
            let ws = tempDir "hf-model-example"
            let code, out = runScript ws (Path.Combine(repoRoot, "scripts", "hf-model.fsx")) $"-- --tokenizer \"{tok}\" --steps 4 --general-docs 120"
            Expect.equal code 0 $"the script succeeds: {out}"
            Expect.stringContains out "general_retention perplexity" "the capability table is printed"
            let merged = out.Split('\n') |> Array.find (fun l -> l.StartsWith "merge ") |> fun l -> l.Substring(9).Trim()
            let struct (model, tokenizer) = Checkpoint.Load merged
            use _ = model
            Expect.equal model.Config.ModelType "qwen3" "a qwen3 checkpoint"
            Expect.isTrue (sameBytes (Path.Combine(tok, Tokenizers.ConfigFile)) (Path.Combine(merged, Tokenizers.ConfigFile))) "its tokenizer files, chat_template included"
            Expect.equal tokenizer.VocabSize vocab "the tokenizer's vocabulary"

        testCase "research eval --capabilities on a gemma2 directory: the six suites, generation through the model's template" <| fun _ ->
            let dir = hubDir "gemma2" 12L
            let cli = Path.Combine(AppContext.BaseDirectory, "research.dll")
            let psi = Diagnostics.ProcessStartInfo("dotnet", $"\"{cli}\" eval \"{dir}\" --capabilities --world-size 120 --world-seed 3 --json",
                                                   RedirectStandardOutput = true, RedirectStandardError = true)
            use p = Diagnostics.Process.Start psi
            let stdout = p.StandardOutput.ReadToEndAsync()
            let stderr = p.StandardError.ReadToEnd()
            p.WaitForExit()
            Expect.equal p.ExitCode 0 $"research eval exits 0: {stderr}"
            let c = (JsonNode.Parse stdout.Result)["capabilities"]
            Expect.equal (c["template"].GetValue<string>()) "model" "prompts rendered by the model's chat_template"
            for suite, metric in [ "domain_knowledge", "acc"; "domain_task", "acc"; "reasoning", "exact_match"; "instruction_following", "acc"
                                   "preference", "acc"; "general_retention", "perplexity" ] do
                let v = c[suite].[metric].GetValue<float>()
                Expect.isTrue (Double.IsFinite v && v >= 0.0) $"{suite} {metric} = {v}"

        testCase "walking two models' weights side by side (Seq.zip) leaves gradients on for the thread" <| fun _ ->
            use a = Checkpoint.LoadModel(hubDir "phi3" 1L)
            use b = Checkpoint.LoadModel(hubDir "phi3" 2L)
            Expect.isTrue (torch.is_grad_enabled ()) "on before"
            let n = Seq.zip (Checkpoint.Weights a) (Checkpoint.Weights b) |> Seq.map (fun (x, y) -> x.Value.Dispose(); y.Value.Dispose()) |> Seq.length
            Expect.isGreaterThan n 0 "weights walked"
            Expect.isTrue (torch.is_grad_enabled ()) "still on after (a no_grad held across yields was restored out of order)"

        testCase "merging models whose tokenizers differ is refused before any tensor is read" <| fun _ ->
            let a = hubDir "qwen3" 7L
            let b = FamilyTests.writeRandomCheckpoint "qwen-other-tok" (FamilyTests.parse (snd configs[0])) 8L torch.float32 None
            for f in Directory.GetFiles(HfTokenizerTests.dirOf "qwen3") do File.Copy(f, Path.Combine(b, Path.GetFileName f))
            let out = tempDir "merge-vocab"
            let none = Collections.Generic.Dictionary<string, ParamSetting>()
            let config = MergeConfig(Method = MergeMethod.Linear, Models = [| MergeModel(a, none); MergeModel(b, none) |])
            throwsWith<InvalidDataException> (fun () -> StreamingMerge.Run(config, Path.Combine(out, "merged")) |> ignore)
                [ "vocabularies differ"; "token id" ] "named"
            Expect.isFalse (Directory.Exists(Path.Combine(out, "merged"))) "nothing written"
    ]
