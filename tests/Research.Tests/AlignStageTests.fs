/// The align stage: preference JSONL, pair batches, the reference cache, and short end-to-end runs on a micro model.
module Research.Tests.AlignStageTests

open System
open System.IO
open System.Text.Json.Nodes
open Expecto
open TorchSharp
open Research.Data
open Research.Models
open Research.Stages
open Research.Training
open Research.Tests.TestUtil

let private write (dir: string) (name: string) (lines: string list) =
    let p = Path.Combine(dir, name)
    File.WriteAllLines(p, lines)
    p

let private byteTok () = Tokenizers.ByName "byte"

/// Copy task over the first k letters: prompt "c=" → chosen "c" (correct), rejected another letter (wrong); same length,
/// so a random model prefers either about half the time. k = 8 keeps it learnable by a micro model in a few dozen steps.
let private copyPairs (n: int) (seed: int64) =
    let k = 8
    let rng = Rng(seed)
    [ for _ in 1 .. n ->
        let a = char (int 'a' + rng.NextInt k)
        let b = char (int 'a' + (int a - int 'a' + 1 + rng.NextInt(k - 1)) % k)
        $"{{\"prompt\": \"{a}=\", \"chosen\": \"{a}\", \"rejected\": \"{b}\"}}" ]

/// A parent checkpoint: the micro model at a seed (random weights stand in for a pretrained base).
let private parent (dir: string) =
    use m = microModel 3L
    let p = Path.Combine(dir, "parent")
    Checkpoint.Save(p, m, byteTok ())
    p

let private ctx (dir: string) (parentDir: string) =
    StageContext("align", Path.Combine(dir, "stage"), [| parentDir |], [||], 5L, torch.CPU, TextWriter.Null)

let private metricLines (stageDir: string) (kind: string) =
    File.ReadAllLines(Path.Combine(stageDir, Trainer.MetricsFile))
    |> Array.map (fun l -> JsonNode.Parse(l))
    |> Array.filter (fun n -> n["kind"].GetValue<string>() = kind)

let private quick steps =
    TrainConfig(Steps = steps, BatchSize = 8, LearningRate = 2e-3, WarmupSteps = 2, WeightDecay = 0.0, LogEvery = 5, EvalEvery = 0, CheckpointEvery = 0)

let private run (dir: string) (o: AlignOptions) =
    let p = parent dir
    let c = ctx dir p
    let m = AlignExecutor().Execute(c, o)
    c, m

/// An SFT checkpoint: the tune stage on prompt/completion lines, from the micro model at seed 3.
let private sftParent (dir: string) (lines: string list) (steps: int) (lr: float) =
    let data = write dir "sft.jsonl" lines
    let p = parent dir
    let c = StageContext("tune", Path.Combine(dir, "sft"), [| p |], [||], 5L, torch.CPU, TextWriter.Null)
    let o = TuneOptions(DataPath = data, BlockLength = 32, ValidationFraction = 0.0,
                        Train = TrainConfig(Steps = steps, BatchSize = 16, LearningRate = lr, WarmupSteps = 4, WeightDecay = 0.0, LogEvery = 10, EvalEvery = 0, CheckpointEvery = 0))
    TuneExecutor().Execute(c, o) |> ignore
    c.FinalCheckpoint

/// Share of held-out pairs where a checkpoint's log pi(chosen) > log pi(rejected), computed here from the weights.
let private logpAccuracy (checkpoint: string) (val': AlignItem seq) =
    let struct (m, _) = Checkpoint.Load checkpoint
    use m = m
    m.eval()
    let items = Array.ofSeq val'
    let struct (c, _) = ReferenceCache.SequenceSums(m, [| for i in items -> i.First |], 16)
    let struct (r, _) = ReferenceCache.SequenceSums(m, [| for i in items -> i.Second |], 16)
    Array.average [| for i in 0 .. items.Length - 1 -> if c[i] > r[i] then 1.0 else 0.0 |]

/// Letters a..h after "c=": k random ones (the tail of an answer).
let private tail (rng: Rng) (k: int) = String([| for _ in 1 .. k -> char (int 'a' + rng.NextInt 8) |])

[<Tests>]
let tests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "AlignStage" [
        testCase "length-normalised objectives at DPO's beta get a warning naming the beta on the per-token scale" <| fun _ ->
            // Completions of 20 and 40 tokens after a 3-token prompt: mean 30, so beta 0.1 x 30 = 3.
            let row n = AlignRow(Array.create (3 + n) 65, 3)
            let train = [| for _ in 1 .. 4 -> AlignItem(row 40, row 20, 1.0, true, "p") |]
            let opts mode (loss: PreferenceLoss) beta =
                AlignOptions(Mode = mode, Preference = PreferenceOptions(Beta = beta, Losses = [| WeightedPreferenceLoss(loss) |]))
            let hint = Align.BetaScaleHint(opts AlignMode.Paired PreferenceLoss.SigmoidNorm 0.1, train)
            Expect.isNotNull hint "sigmoid_norm at beta 0.1 is warned about"
            Expect.stringContains hint "sigmoid_norm" "names the loss"
            Expect.stringContains hint "about 30x" "says how much smaller its margins are"
            Expect.stringContains hint "beta 3 (beta x the mean completion tokens)" "gives the beta on DPO's scale"
            Expect.isNotNull (Align.BetaScaleHint(opts AlignMode.SimPO PreferenceLoss.Sigmoid 0.1, train)) "SimPO at beta 0.1 too"
            Expect.isNull (Align.BetaScaleHint(opts AlignMode.Paired PreferenceLoss.Sigmoid 0.1, train)) "DPO's own beta is not warned about"
            Expect.isNull (Align.BetaScaleHint(opts AlignMode.Paired PreferenceLoss.SigmoidNorm 3.0, train)) "a per-token-scale beta is fine"
            Expect.isNull (Align.BetaScaleHint(opts AlignMode.SimPO PreferenceLoss.Sigmoid 2.5, train)) "SimPO's paper beta is fine"

        testCase "paired and unpaired JSONL; messages rendered with the template" <| fun _ ->
            let dir = tempDir "align-jsonl"
            let paired =
                write dir "p.jsonl"
                    [ """{"prompt": "hi", "chosen": "yes", "rejected": "no"}"""
                      ""
                      """{"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}], "rejected": "5"}""" ]
            let f = PreferenceData.Read paired
            Expect.isTrue f.Paired "paired"
            Expect.equal f.Records.Count 2 "blank line skipped"
            Expect.equal f.Records[1].Prompt "<|user|>\n2+2?\n<|assistant|>\n" "messages prompt rendered"
            Expect.equal f.Records[1].Chosen "4" "assistant message content"
            Expect.equal f.Records[1].Line 3 "line numbers count blank lines"
            let unpaired =
                write dir "u.jsonl"
                    [ """{"prompt": "a", "completion": "b", "label": true}"""
                      """{"prompt": "a", "completion": "c", "label": 0.25}""" ]
            let u = PreferenceData.Read unpaired
            Expect.isFalse u.Paired "unpaired"
            Expect.equal [ for r in u.Records -> r.Label ] [ 1.0; 0.25 ] "bool and number labels"
            let viaLines = PreferenceData.Parse(PreferenceData.Lines paired, "p")
            Expect.equal (List.ofSeq viaLines.Records) (List.ofSeq f.Records) "lines as documents (a stage data input) parse the same"

        testCase "errors name file and line; empty completions are skipped and counted" <| fun _ ->
            let dir = tempDir "align-errors"
            let bad name line = write dir name [ """{"prompt": "a", "chosen": "b", "rejected": "c"}"""; line ]
            let check name line frags =
                let p = bad name line
                throwsWith<CorpusException> (fun () -> PreferenceData.Read p |> ignore) ($"{p}:2" :: frags) name
            check "missing.jsonl" """{"prompt": "a", "chosen": "b"}""" [ "missing field \"rejected\"" ]
            check "type.jsonl" """{"prompt": 3, "chosen": "b", "rejected": "c"}""" [ "\"prompt\" must be a string or a messages array" ]
            check "json.jsonl" """{"prompt": """ [ "malformed JSON" ]
            check "mixed.jsonl" """{"prompt": "a", "completion": "b", "label": true}""" [ "one file holds one shape" ]
            check "role.jsonl" """{"prompt": "a", "chosen": [{"role": "user", "content": "x"}], "rejected": "c"}""" [ "a completion is an \"assistant\" message" ]
            let p = write dir "label.jsonl" [ """{"prompt": "a", "completion": "b", "label": 1.5}""" ]
            throwsWith<CorpusException> (fun () -> PreferenceData.Read p |> ignore) [ $"{p}:1"; "outside [0, 1]" ] "label range"
            let s = write dir "skip.jsonl" [ """{"prompt": "a", "chosen": "b", "rejected": "c"}"""; """{"prompt": "a", "chosen": "  ", "rejected": "c"}""" ]
            let f = PreferenceData.Read s
            Expect.equal (f.Records.Count, f.Skipped) (1, 1) "one kept, one skipped"
            Expect.stringContains f.SkippedAt[0] $"{s}:2" "skip names file:line"

        testCase "over-long prompts are left-truncated (BOS and the prompt's end kept) and counted" <| fun _ ->
            let tok = byteTok ()
            let r = PreferenceRecord("0123456789", "ab", "c", 1.0, "x", 1)
            let t = PreferenceData.Tokenize([| r |], tok, 8, 4)
            let e = t.Examples[0]
            Expect.equal e.Prompt [| tok.BosId; int '7'; int '8'; int '9' |] "BOS + last 3 prompt tokens"
            Expect.equal e.Chosen [| int 'a'; int 'b'; tok.EosId |] "completion + EOS"
            Expect.equal (t.PromptsTruncated, t.CompletionsTruncated) (1, 0) "counts"

        testCase "a batch scores completion tokens only, chosen and rejected rows in one forward" <| fun _ ->
            let tok = byteTok ()
            let f = PreferenceData.Parse([ Document("""{"prompt": "ab", "chosen": "c", "rejected": "de"}""", "mem", 1) ], "mem")
            let data = Align.Prepare(f, tok, AlignOptions(ValidationFraction = 0.0), 1L, 64)
            let item = data.Train[0]
            let items = [| AlignItem(item.First, item.Second, item.Label, item.Paired, item.Prompt, RefFirst = -1.0, RefSecond = -2.0) |]
            use b = PreferenceBatch.From(items, true, tok.PadId, torch.CPU)
            Expect.equal b.Input.shape [| 2L; 5L |] "2 rows; T = longest row [BOS a b d e EOS] - 1"
            let tgt = b.Target.data<int64>().ToArray()
            let ign = -100L
            Expect.equal tgt[0..4] [| ign; ign; int64 'c'; int64 tok.EosId; ign |] "chosen: prompt and padding masked, completion + EOS scored"
            Expect.equal tgt[5..9] [| ign; ign; int64 'd'; int64 'e'; int64 tok.EosId |] "rejected row after the chosen rows"
            Expect.equal (b.Input.data<int64>().ToArray()[0..4]) [| int64 tok.BosId; int64 'a'; int64 'b'; int64 'c'; int64 tok.PadId |] "chosen input right-padded"
            Expect.equal b.Normalizer 1L "normalizer = pairs"
            Expect.equal (b.Reference.data<float32>().ToArray()) [| -1.0f; -2.0f |] "reference per row"

        testCase "reference log-probs are computed once, cached, reused; training needs only the cache" <| fun _ ->
            let dir = tempDir "align-cache"
            let p = parent dir
            let tok = byteTok ()
            let f = PreferenceData.Parse(copyPairs 20 1L |> List.mapi (fun i l -> Document(l, "mem", i + 1)), "mem")
            let o = AlignOptions(ValidationFraction = 0.2, Train = quick 6)
            let data = Align.Prepare(f, tok, o, 1L, 64)
            let stage = Path.Combine(dir, "stage")
            let before = ReferenceCache.Computations
            let d1, computed1 = ReferenceCache.Prepare(p, stage, data, torch.CPU, 16).ToTuple()
            let file = Path.Combine(stage, ReferenceCache.FileName)
            let t1 = File.GetLastWriteTimeUtc file
            let d2, computed2 = ReferenceCache.Prepare(p, stage, data, torch.CPU, 16).ToTuple()
            Expect.isTrue computed1 "first run computes"
            Expect.isFalse computed2 "second run reads the cache"
            Expect.equal (ReferenceCache.Computations - before) 1 "the reference model ran once"
            Expect.equal (File.GetLastWriteTimeUtc file) t1 "cache file not rewritten"
            Expect.equal [ for i in d2.Train -> i.RefFirst ] [ for i in d1.Train -> i.RefFirst ] "same values back"
            // The reference at step 0 equals the policy: the parent's own log-probs of the rows.
            use m = microModel 3L
            let sums = (fst (ReferenceCache.SequenceSums(m, [| d1.Train[0].First |], 4).ToTuple()))
            Expect.floatClose Accuracy.medium (float sums[0]) d1.Train[0].RefFirst "cache = parent's log-probs"
            // Train a policy from a copy with the parent directory gone: nothing but the cache is needed.
            let (policy, _) = Checkpoint.Load(p, torch.CPU).ToTuple()
            Directory.Delete(p, true)
            use policy = policy
            let obj = AlignObjective(d2.Train, o, tok.PadId, d2.Fingerprint())
            let r = Trainer.Run(policy, tok, obj, o.Train, stage, null, TextWriter.Null)
            Expect.equal r.Steps 6L "trained"
            Expect.isTrue (Double.IsFinite r.LastMetrics["rewards/margins"]) "margins reported"

        testCase "DPO on the copy task raises held-out preference accuracy; report and generations written" <| fun _ ->
            let dir = tempDir "align-dpo"
            let data = write dir "copy.jsonl" (copyPairs 160 2L)
            let o = AlignOptions(DataPath = data, ValidationFraction = 0.25, Generations = 4, GenerationTokens = 4, Train = quick 60)
            let c, m = run dir o
            let vals = metricLines c.Directory "val"
            let train = metricLines c.Directory "train"
            let last = vals[vals.Length - 1]
            let num (n: JsonNode) (k: string) = n[k].GetValue<float>()
            // Start: the policy is the reference, so every implicit reward is 0 (accuracy 0), and the raw log-prob
            // preference of a random model is near chance.
            printfn "align DPO: start (reference) val_logp_accuracy %.3f; after: val_pref_accuracy %.3f val_logp_accuracy %.3f margin %.3f kl_ref %.3f; train accuracy first %.3f last %.3f"
                (num last "val_ref_logp_accuracy") (num last "val_pref_accuracy") (num last "val_logp_accuracy") (num last "val_margin") (num last "val_kl_ref")
                (num train[0] "rewards/accuracy") (num train[train.Length - 1] "rewards/accuracy")
            Expect.isGreaterThanOrEqual (num last "val_pref_accuracy") 0.8 "held-out pairs with beta h > 0 (the start has 0: every h is 0)"
            Expect.isGreaterThan (num last "val_logp_accuracy") (num last "val_ref_logp_accuracy" + 0.2) "held-out log pi(chosen) > log pi(rejected): up from the starting model"
            for k in [ "rewards/chosen"; "rewards/rejected"; "rewards/margins"; "rewards/accuracy"; "kl_ref"; "length/chosen" ] do
                Expect.isTrue (train[0].AsObject().ContainsKey k) $"train metric {k}"
            let report = JsonNode.Parse(File.ReadAllText(Path.Combine(c.Directory, AlignExecutor.ReportFile)))
            Expect.equal (report["records"].GetValue<int>()) 160 "records counted"
            Expect.equal (report["validation_examples"].GetValue<int>()) 40 "held out"
            Expect.equal (File.ReadAllLines(Path.Combine(c.Directory, AlignExecutor.GenerationsFile)).Length) 4 "generations"
            Expect.isTrue (File.Exists(Path.Combine(c.Directory, ReferenceCache.FileName))) "cache in the stage dir"
            Expect.isTrue (m.ContainsKey "val_pref_accuracy") "last metrics include validation"

        testCase "KTO, SimPO, ORPO and point-wise runs finish with a falling loss and a better held-out preference" <| fun _ ->
            let dir = tempDir "align-modes"
            let data = write dir "copy.jsonl" (copyPairs 96 3L)
            for mode, pref in [ AlignMode.Kto, PreferenceOptions()
                                AlignMode.SimPO, PreferenceOptions(Beta = 2.0)
                                AlignMode.Orpo, PreferenceOptions()
                                AlignMode.Pointwise, PreferenceOptions() ] do
                let d = Path.Combine(dir, string mode)
                Directory.CreateDirectory d |> ignore
                let o = AlignOptions(DataPath = data, Mode = mode, Preference = pref, ValidationFraction = 0.25, Generations = 0, Train = quick 20)
                let c, _ = run d o
                let train = metricLines c.Directory "train"
                let loss (i: int) = (train[i].["loss"]).GetValue<float>()
                let v = (metricLines c.Directory "val") |> Array.last
                let num (k: string) = v[k].GetValue<float>()
                printfn "align %A: loss %.4f -> %.4f; held-out log-prob accuracy %.3f (start %.3f)" mode (loss 0) (loss (train.Length - 1)) (num "val_logp_accuracy") (num "val_ref_logp_accuracy")
                Expect.isLessThan (loss (train.Length - 1)) (loss 0) $"{mode}: loss falls"
                Expect.isGreaterThan (num "val_logp_accuracy") (num "val_ref_logp_accuracy") $"{mode}: held-out log pi(chosen) > log pi(rejected) more often than at the start"
                Expect.isTrue (train[0].AsObject().ContainsKey "rewards/chosen") $"{mode}: rewards reported"
        testCase "DPO raises held-out preference accuracy over the SFT model it starts from; bad lines counted in the report" <| fun _ ->
            let dir = tempDir "align-over-sft"
            // SFT teaches the answer format (one letter after "c=") but not which letter: completions are random letters.
            let rng = Rng(11L)
            let sft = sftParent dir [ for _ in 1 .. 64 -> let a = tail rng 1 in $"{{\"prompt\": \"{a}=\", \"completion\": \"{tail rng 1}\"}}" ] 12 3e-3
            let pairs = copyPairs 120 2L @ [ """{"prompt": "a=", "chosen": "", "rejected": "b"}"""; $"""{{"prompt": "{String('a', 70)}=", "chosen": "a", "rejected": "b"}}""" ]
            let data = write dir "copy.jsonl" pairs
            let o = AlignOptions(DataPath = data, ValidationFraction = 0.25, MaxPromptLength = 16, Generations = 0, Train = quick 60)
            let c = StageContext("align", Path.Combine(dir, "dpo"), [| sft |], [||], 5L, torch.CPU, TextWriter.Null)
            AlignExecutor().Execute(c, o) |> ignore
            let file = PreferenceData.Read data
            let heldOut = (Align.Prepare(file, byteTok (), o, 5L, 64)).Validation
            let before = logpAccuracy sft heldOut
            let after = logpAccuracy c.FinalCheckpoint heldOut
            printfn $"align over SFT: held-out preference accuracy (log pi(chosen) > log pi(rejected)) SFT {before:F3} -> DPO {after:F3} on {heldOut.Count} pairs"
            Expect.isLessThan before 0.75 "the SFT model does not already know the preference"
            Expect.isGreaterThan after (before + 0.25) "DPO is better than its SFT parent"
            let report = JsonNode.Parse(File.ReadAllText(Path.Combine(c.Directory, AlignExecutor.ReportFile)))
            Expect.equal (report["skipped_empty_completion"].GetValue<int>()) 1 "the empty completion is skipped and counted"
            Expect.equal (report["prompts_truncated"].GetValue<int>()) 1 "the prompt longer than the model (max_length) is left-truncated to max_prompt_length and counted"
            Expect.equal (report["records"].GetValue<int>()) 121 "the rest trained on"

    ]
