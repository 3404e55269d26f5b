/// The typed DSL: every setting a script changes is a typed function (the issue's examples compile and build the
/// options they say), with no string-named fields or boxed values.
module Research.Tests.DslTests

open System
open Expecto
open Research
open Research.Pipelines
open Research.Stages
open Research.Tests.TestUtil

let private world = World.quick 40 1
let private start = pretrain world.General microConfig |> Stage.named "base"
let private prefs = "/data/prefs.jsonl"

let private options<'o when 'o :> Research.Stages.IStageOptions> (s: Stage) = s.Config :?> 'o

[<Tests>]
let tests =
    testList "Dsl" [
        testCase "align prefs |> Align.loss (Ipo 0.1): mode, loss and beta as typed values" <| fun _ ->
            let o = start |> (align prefs |> Align.loss (Ipo 0.1)) |> options<AlignOptions>
            Expect.equal o.Mode AlignMode.Paired "paired"
            Expect.equal [ for l in o.Preference.Losses -> l.Kind ] [ PreferenceLoss.Ipo ] "IPO"
            Expect.equal o.Preference.Beta 0.1 "beta"
            let simpo = start |> (align prefs |> Align.loss (SimPo (2.0, 0.8)) |> Align.maxLength 96 |> Stage.template "model") |> options<AlignOptions>
            Expect.equal (simpo.Mode, simpo.Preference.Beta, simpo.Preference.SimpoGamma, simpo.MaxLength, simpo.Template) (AlignMode.SimPO, 2.0, 0.8, 96, "model") "SimPO, its gamma, other settings"
            let kto = start |> (align prefs |> Align.loss (Kto 0.2) |> Align.samples 4 0.7 0.9) |> options<AlignOptions>
            Expect.equal (kto.Mode, kto.SamplesPerPrompt, kto.SampleTemperature, kto.SampleTopP) (AlignMode.Kto, 4, 0.7, 0.9) "KTO and sampling"

        testCase "distill teacher corpus |> Distill.kd 0.9 |> Distill.topK 32" <| fun _ ->
            let teacher = start |> Stage.named "teacher"
            let o = start |> (distill teacher world.Finance |> Distill.kd 0.9 |> Distill.topK 32 |> Stage.steps 7) |> options<DistillStageOptions>
            Expect.equal (o.Loss.KdRatio, o.TeacherTopK, o.Train.Steps) (0.9, 32, 7) "kd ratio, top-k cache, steps"

        testCase "merge Ties { density = 0.5 } base [ a; b ]: method, density, parents in order" <| fun _ ->
            let a = start |> (adapt (domain world.Finance) |> Stage.named "a")
            let b = start |> (adapt (domain world.General) |> Stage.named "b")
            let m = merge Ties { density = 0.5 } start [ a; b ]
            let o = options<MergeStageOptions> m
            Expect.equal (o.Method, o.Density) (Research.Stages.Merge.MergeMethod.Ties, Nullable 0.5) "TIES at density 0.5"
            Expect.equal [ for p in m.Parents -> p.Name ] [ "base"; "a"; "b" ] "base first"
            let s = merge Slerp { t = 0.3 } start [ a ] |> options<MergeStageOptions>
            Expect.equal (s.Method, s.T) (Research.Stages.Merge.MergeMethod.Slerp, Nullable 0.3) "SLERP"
            let w = mergeWeighted TaskArithmetic { lambda = 0.7 } start [ a, 2.0; b, 1.0 ] |> options<MergeStageOptions>
            Expect.equal (w.Lambda, List.ofArray w.Weights) (Nullable 0.7, [ 2.0; 1.0 ]) "weights and lambda"

        testCase "training modifiers apply to every kind that trains, in any order, and refuse one that does not" <| fun _ ->
            let t = start |> (tune "/data/sft.jsonl" |> Stage.lr 1e-4 |> Stage.steps 9 |> Stage.bf16 |> Stage.lora (lora 4 8.0 |> loraTargets [ "qkv_proj" ])) |> options<TuneOptions>
            Expect.equal (t.Train.LearningRate, t.Train.Steps, t.Train.Precision) (1e-4, 9, Research.Training.Precision.BFloat16) "lr, steps, bf16"
            Expect.equal (List.ofArray t.Train.Lora.TargetModules) [ "qkv_proj" ] "LoRA targets"
            let m = merge Ties { density = 0.5 } start [ start |> Stage.named "x" ]
            throwsWith<ArgumentException> (fun () -> m |> Stage.steps 3 |> ignore) [ "MergeStageOptions"; "no training settings" ] "merge does not train"
            throwsWith<ArgumentException> (fun () -> start |> Stage.template "model" |> ignore) [ "PretrainConfig"; "chat template" ] "pretrain has no template"

        testCase "a sweep is a list comprehension over typed values: one point each, labelled by its parameters" <| fun _ ->
            let adaptFor r = adapt (world.Finance |> replay world.General r) |> Stage.named "adapt"
            let e = Experiment.points "replay" [ for r in [ 0.0; 0.1; 0.25 ] -> [ "replay", r ], start |> adaptFor r ]
            Expect.equal [ for p in e.Points -> p.Label ] [ "replay=0"; "replay=0.1"; "replay=0.25" ] "labels"
            Expect.equal [ for p in e.Points -> (options<AdaptOptions> p.Leaves[0]).Replay ] [ 0.0; 0.1; 0.25 ] "each point its own value"
            let keys = [ for p in e.Points -> Executor.Key(p.Leaves[0].Parents[0], 1L) ]
            Expect.equal (List.distinct keys).Length 1 "the shared parent has one key"
    ]
