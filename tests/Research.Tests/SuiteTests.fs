/// Capability suites: rules on hand-made answers, preference accuracy against hand-computed log-probs, batch-size
/// invariance, the capability report, and the four directions on one tiny pretrain → adapt → tune → align experiment.
module Research.Tests.SuiteTests

open System
open System.IO
open System.Collections.Generic
open Expecto
open TorchSharp
open Research
open Research.Data
open Research.Data.Synthetic
open Research.Eval
open Research.Models
open Research.Pipelines
open Research.Tests.TestUtil

let private tok () = Tokenizers.ByName "byte"

/// A model a little larger than the micro one, with room for the world's prompts (128 positions).
let private smallConfig =
    ModelConfig(
        VocabSize = 259, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2,
        NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 128)

/// log p(completion + EOS | BOS + prompt), summed, by one forward of the whole row (no batching, no padding).
let private handLogProb (model: CausalLM) (prompt: string) (completion: string) =
    let t = tok ()
    let p = Array.append [| t.BosId |] (t.Encode prompt)
    let c = Array.append (t.Encode completion) [| t.EosId |]
    let all = Array.append p c
    use _ = torch.no_grad ()
    use input = torch.tensor (all.[.. all.Length - 2] |> Array.map int64, dtype = torch.int64)
    use logits = model.Forward(input.view(1L, -1L))
    use lp = logits.[0].``to``(torch.float64).log_softmax(-1)
    [ for j in 0 .. c.Length - 1 -> lp.[int64 (p.Length - 1 + j), int64 c.[j]].item<float>() ] |> List.sum

let private pairsFile (dir: string) (pairs: (string * string * string) list) =
    let path = Path.Combine(dir, $"pairs-{Guid.NewGuid():N}.jsonl")
    File.WriteAllLines(path, [ for (p, c, r) in pairs -> Text.Json.JsonSerializer.Serialize(dict [ "prompt", p; "chosen", c; "rejected", r ]) ])
    path

let private node name evals =
    NodeResult(name, "adapt", "k", "done", "/d",
               Dictionary<string, float>() :> IReadOnlyDictionary<_, _>,
               (evals |> List.map (fun (s, m: (string * float) list) -> KeyValuePair(s, (dict m |> Dictionary) :> IReadOnlyDictionary<string, float>)) |> Dictionary) :> IReadOnlyDictionary<_, _>)

/// One tiny experiment on a small world, shared by the direction tests (run once, on first use).
let private tiny =
    lazy (
        let ws = tempDir "suite-tiny"
        let w = World.createIn (Path.Combine(ws, "world")) 1800 5              // 12 companies, 4 of them test companies
        let quick (s: Stage) = s |> Stage.logEvery 10 |> Stage.evalEvery 0 |> Stage.checkpointEvery 0
        let start = pretrain w.General smallConfig |> Stage.steps 120 |> Stage.lr 3e-3 |> quick
        let adaptFor name share =
            adapt (w.Domain |> replay w.General share) |> Stage.steps 120 |> Stage.lr 3e-3 |> Stage.apply quick |> Stage.named name
        let recipe =
            branch [ adaptFor "adapt-no-replay" 0.0
                     adaptFor "adapt-replay" 0.25
                     >=> (tune w.Instructions |> Stage.steps 60 |> Stage.lr 2e-3 |> Stage.apply quick)
                     >=> (align w.Preferences |> Stage.steps 20 |> Stage.lr 5e-4 |> Stage.apply quick) ]
        let e =
            Experiment.createBranches "tiny-capabilities" start recipe
            |> Experiment.seed 5L
            |> Experiment.evaluateEach (Experiment.heldOutPerplexity w.Domain :: Capabilities.suites w)
        let r = Executor(ExecutorOptions(Workspace = ws, Log = TextWriter.Null)).Run e
        let report = Capabilities.report r
        printfn "tiny capability experiment:\n%s" (report.Table())
        r, report)

[<Tests>]
let tests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "Suite" [
        testCase "format rules on hand-made answers" <| fun _ ->
            let check c k s = FormatRules.Check(c, k, s)
            Expect.isTrue (check FormatRules.OneWord null " energy ") "one word, spaces around"
            Expect.isFalse (check FormatRules.OneWord null "energy sector") "two words"
            Expect.isFalse (check FormatRules.OneWord null "energy.") "punctuation"
            Expect.isFalse (check FormatRules.OneWord null "") "empty"
            Expect.isTrue (check FormatRules.Uppercase null "ARDEN BAY") "uppercase"
            Expect.isFalse (check FormatRules.Uppercase null "Arden") "mixed case"
            Expect.isFalse (check FormatRules.Uppercase null "123") "no letter"
            Expect.isTrue (check FormatRules.EndsWithPeriod null "The chief is Bo Tam.") "sentence with a period"
            Expect.isFalse (check FormatRules.EndsWithPeriod null "Bo Tam") "no period"
            Expect.isFalse (check FormatRules.EndsWithPeriod null "Yes.") "one word is not a sentence"
            Expect.isTrue (check FormatRules.Json "sector" """{"sector": "energy"}""") "JSON with the key"
            Expect.isFalse (check FormatRules.Json "sector" """{"city": "Arden"}""") "JSON without the key"
            Expect.isFalse (check FormatRules.Json "sector" """["sector"]""") "not an object"
            Expect.isFalse (check FormatRules.Json "sector" "sector: energy") "not JSON"
            throwsWith<ArgumentException> (fun () -> check "haiku" null "x" |> ignore) [ "haiku" ] "unknown rule"

        testCase "preference accuracy: log-probs as computed by hand; swapping pairs flips it; the model against itself has no reward" <| fun _ ->
            let dir = tempDir "pref-suite"
            let pairs = [ "<|user|>\nsector?\n<|assistant|>\n", "energy", "Well, it might be energy or banking"
                          "Q: 2+2=", "4", "5"
                          "Name:", "Tam", "TAM"
                          "x", "a b c", "c" ]
            use model = new CausalLM(smallConfig, 11L)
            let path = pairsFile dir pairs
            let m = PreferenceAccuracySuite("pref", path, 3).Evaluate(model, tok ())
            let diffs = [ for (p, c, r) in pairs -> handLogProb model p c - handLogProb model p r ]
            Expect.floatClose Accuracy.high m["acc"] (diffs |> List.averageBy (fun d -> if d > 0.0 then 1.0 else 0.0)) "acc"
            Expect.floatClose { absolute = 1e-3; relative = 1e-4 } m["margin"] (List.average diffs) "margin = mean log-prob difference"
            Expect.equal m["count"] 4.0 "count"
            let swapped = PreferenceAccuracySuite("pref", pairsFile dir [ for (p, c, r) in pairs -> p, r, c ], 3).Evaluate(model, tok ())
            Expect.floatClose Accuracy.high swapped["acc"] (1.0 - m["acc"]) "swapped pairs: 1 - acc"
            let ckpt = Path.Combine(dir, "self")
            Checkpoint.Save(ckpt, model, tok ())
            let vsSelf = PreferenceAccuracySuite("pref", path, 3).Evaluate(model, tok (), ckpt)
            Expect.equal vsSelf["reward_acc"] 0.0 "no implicit reward against itself"
            Expect.equal vsSelf["acc"] m["acc"] "acc unchanged by the reference"

        testCase "scores do not depend on the batch size (1, 3, 8): multiple choice and preference accuracy" <| fun _ ->
            let w = World(120, 4)
            let f = w.Write(tempDir "batch-suite")
            use model = new CausalLM(smallConfig, 12L)
            let mc b = McSuite("k", f.GeneralKnowledge, 1, null, 3L, b, Capability.ClozeTemplate).Score(model, tok ())
            let r1, r3, r8 = mc 1, mc 3, mc 8
            Expect.equal (r3.Acc, r3.AccNorm) (r1.Acc, r1.AccNorm) "MC at batch 3 = batch 1"
            Expect.equal (r8.Acc, r8.AccNorm) (r1.Acc, r1.AccNorm) "MC at batch 8 = batch 1"
            for a, b in Seq.zip r1.Predictions r8.Predictions do
                for x, y in Seq.zip a.LogLikelihoods b.LogLikelihoods do
                    Expect.floatClose { absolute = 1e-4; relative = 1e-5 } y x $"{a.Item.Where}: same log-likelihood"
            let pref b = PreferenceAccuracySuite("p", f.HeldOutPreferences, b).Evaluate(model, tok ())
            let p1, p3, p8 = pref 1, pref 3, pref 8
            Expect.equal p3["acc"] p1["acc"] "preference acc at batch 3 = batch 1"
            Expect.equal p8["acc"] p1["acc"] "preference acc at batch 8 = batch 1"
            Expect.floatClose { absolute = 1e-3; relative = 1e-5 } p8["margin"] p1["margin"] "margin"

        testCase "generation suites: an untrained model never ends its answer, so nothing counts" <| fun _ ->
            let f = World(60, 2).Write(tempDir "gen-suite")
            use model = new CausalLM(smallConfig, 13L)
            let ifs = InstructionFollowingSuite("if", f.InstructionFollowing, maxNewTokens = 8).Evaluate(model, tok ())
            Expect.equal ifs["count"] 12.0 "3 test companies × 4 constraints"
            Expect.equal ifs["stopped"] 0.0 "no EOS within 8 tokens from random weights"
            Expect.equal ifs["acc"] 0.0 "so no instruction is followed"
            for c in FormatRules.All do Expect.isTrue (ifs.ContainsKey $"acc_{c}") $"per-constraint acc_{c}"
            let rs = ReasoningSuite("r", f.Reasoning, maxNewTokens = 8).Evaluate(model, tok ())
            Expect.equal rs["count"] 9.0 "3 test companies × 3 quarter pairs"
            Expect.equal rs["exact_match"] 0.0 "exact match needs an ended answer"

        testCase "capability report: capabilities × stages from node evaluations, '-' where a stage was not evaluated" <| fun _ ->
            let run =
                RunResult(1L, SweepPoint(Dictionary<string, float>(), [||]), 1234L,
                          [| node "pretrain" [ "domain_knowledge", [ "acc", 0.25; "acc_norm", 0.5; "count", 12.0 ]; "general_retention", [ "acc", 0.5; "perplexity", 9.5 ] ]
                             node "adapt" [ "domain_knowledge", [ "acc", 0.75; "acc_norm", 0.5; "count", 12.0 ]; "general_retention", [ "acc", 0.25; "perplexity", 12.25 ]; "reasoning", [ "exact_match", 0.125 ] ] |])
            let r = CapabilityReport.From(ExperimentResult("x", [| run |]))
            Expect.equal (List.ofSeq r.Stages) [ "pretrain"; "adapt" ] "stages in pipeline order"
            Expect.equal [ for row in r.Rows -> row.Suite, row.Metric ]
                [ "domain_knowledge", "acc"; "general_retention", "acc"; "general_retention", "perplexity"; "reasoning", "exact_match" ] "headline metrics"
            Expect.equal (r.Value("domain_knowledge", "acc", "adapt")) 0.75 "value lookup"
            Expect.isTrue (Double.IsNaN(r.Value("reasoning", "exact_match", "pretrain"))) "absent is NaN"
            let table = r.Table()
            Expect.stringContains table "general_retention perplexity" "row label"
            Expect.stringContains table "12.250" "value"
            Expect.stringContains table "       -" "missing shown as -"
            Expect.equal ((r.Take 1).Stages.Count) 1 "the report after the first stage"

        testCase "tiny experiment: adapt raises domain knowledge, tune raises instruction following, align raises preference accuracy, replay retains more" <| fun _ ->
            let r, rep = tiny.Force()
            let v suite metric stage = rep.Value(suite, metric, stage)
            Expect.isGreaterThan (v "domain_knowledge" "acc" "adapt-no-replay") (v "domain_knowledge" "acc" "pretrain") "adapt raises domain knowledge"
            Expect.isGreaterThan (v "instruction_following" "acc" "tune") (v "instruction_following" "acc" "adapt-replay") "tune raises instruction following"
            Expect.isGreaterThan (v "preference" "acc" "align") (v "preference" "acc" "tune") "align raises preference accuracy"
            Expect.isGreaterThan (v "preference" "reward_acc" "align") 0.5 "align's implicit reward (vs tune) prefers most held-out chosen answers"
            let rise stage = v "general_retention" "perplexity" stage - v "general_retention" "perplexity" "pretrain"
            Expect.isLessThan (rise "adapt-replay") (rise "adapt-no-replay") "replay: general perplexity rises less"
            Expect.isLessThan (v "domain" "perplexity" "adapt-no-replay") (v "domain" "perplexity" "pretrain") "domain perplexity falls"
            let frame = Capabilities.frame r
            Expect.equal (List.ofSeq frame.ColumnKeys) [ "pretrain"; "adapt-no-replay"; "adapt-replay"; "tune"; "align" ] "frame: one column per stage"
            Expect.contains frame.RowKeys "instruction_following acc" "frame: one row per capability"
    ]
