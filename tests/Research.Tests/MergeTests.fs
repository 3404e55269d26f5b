module Research.Tests.MergeTests

open System
open System.IO
open Expecto
open TorchSharp
open Research.Models
open Research.Data
open Research.Stages.Merge
open Research.Tests.TestUtil

let t (xs: float32 list) = torch.tensor (List.toArray xs)
let t2 (rows: float32 list list) = torch.tensor (array2D rows)
let values (x: torch.Tensor) = x.``to``(torch.float32).data<float32>().ToArray() |> Array.map float
let expectClose (actual: torch.Tensor) (expected: float list) (what: string) =
    let a = values actual
    Expect.equal a.Length expected.Length $"{what}: length"
    for i in 0 .. a.Length - 1 do
        Expect.floatClose Accuracy.medium a.[i] expected.[i] $"{what}: entry {i} of %A{a}"
let lst (xs: 'a list) = Collections.Generic.List<'a>(xs) :> Collections.Generic.IReadOnlyList<'a>
let gens seeds = seeds |> List.map (fun (s: int) -> new torch.Generator(uint64 s)) |> lst

/// A checkpoint directory from a micro model (byte tokenizer).
let saveMicro (dir: string) (seed: int64) =
    use m = microModel seed
    Checkpoint.Save(dir, m, ByteTokenizer.Instance)
    dir

/// The same directory with its weights rewritten by f (name -> tensor map -> new map).
let rewrite (src: string) (dst: string) (f: Collections.Generic.Dictionary<string, torch.Tensor> -> seq<Collections.Generic.KeyValuePair<string, torch.Tensor>>) =
    Directory.CreateDirectory dst |> ignore
    for file in Directory.GetFiles src do File.Copy(file, Path.Combine(dst, Path.GetFileName file), true)
    let w = Safetensors.LoadDirectory src
    Safetensors.Save(Path.Combine(dst, Safetensors.SingleFileName), f w)
    dst

let kv (k: string) (v: torch.Tensor) = Collections.Generic.KeyValuePair(k, v)

// Three 4-entry task vectors over a zero base, chosen so the elected signs and agreeing counts differ by column.
let tau1 = [ 1.0f; -2.0f; 3.0f; -1.0f ]
let tau2 = [ 2.0f; 1.5f; -1.0f; -0.5f ]
let tau3 = [ -1.5f; -1.0f; -0.5f; 3.0f ]

[<Tests>]
let tests =
    testList "Merge" [
        testList "rules" [
            testCase "identical inputs come back: linear, task arithmetic (weights sum to 1), ties, slerp" <| fun _ ->
                use x = t [ 0.5f; -1.0f; 2.0f; 0.25f ]
                use b = t [ 0.1f; 0.2f; -0.3f; 0.0f ]
                let xs = lst [ x; x; x ]
                let w = lst [ 0.2; 0.3; 0.5 ]
                use lin = MergeRules.Linear(xs, w)
                use ta = MergeRules.TaskArithmetic(b, xs, w)
                use ties = MergeRules.Ties(b, xs, lst [ 1.0; 1.0; 1.0 ], lst [ 1.0; 1.0; 1.0 ])
                use sl = MergeRules.Slerp(x, x, 0.3)
                for r, name in [ lin, "linear"; ta, "task arithmetic"; ties, "ties"; sl, "slerp" ] do
                    Expect.isLessThan (maxAbsDiff r x) 1e-6 name

            testCase "task arithmetic with lambda 0 gives the base" <| fun _ ->
                use b = t [ 1.0f; 2.0f; 3.0f ]
                use a = t [ 5.0f; -2.0f; 0.0f ]
                use r = MergeRules.TaskArithmetic(b, lst [ a; a ], lst [ 1.0; 2.0 ], lambda = 0.0)
                Expect.equal (maxAbsDiff r b) 0.0 "base"

            testCase "TIES by hand: trim, elect sign by weighted sum, disjoint mean" <| fun _ ->
                use b = t [ 10.0f; 10.0f; 10.0f; 10.0f ]
                use x1 = t (tau1 |> List.map ((+) 10.0f))
                use x2 = t (tau2 |> List.map ((+) 10.0f))
                use x3 = t (tau3 |> List.map ((+) 10.0f))
                let xs = lst [ x1; x2; x3 ]
                // density 1: column sums 1.5, -1.5, 1.5, 1.5 elect + - + +; agreeing entries
                // (1, 2) -> 1.5; (-2, -1) -> -1.5; (3) -> 3; (3) -> 3
                use full = MergeRules.Ties(b, xs, lst [ 1.0; 1.0; 1.0 ], lst [ 1.0; 1.0; 1.0 ])
                expectClose full [ 11.5; 8.5; 13.0; 13.0 ] "density 1"
                // density 0.5 keeps the top 2 of each: [0,-2,3,0], [2,1.5,0,0], [-1.5,0,0,3];
                // sums 0.5, -0.5, 3, 3 elect + - + +; kept 2 -> 2; -2 -> -2; 3; 3 (zeros never vote)
                use half = MergeRules.Ties(b, xs, lst [ 1.0; 1.0; 1.0 ], lst [ 0.5; 0.5; 0.5 ])
                expectClose half [ 12.0; 8.0; 13.0; 13.0 ] "density 0.5"
                // weights 1, 2, 1: weighted sums 3.5, 0 (ties to +), 0.5, 1; col 1 (1 + 4)/(1 + 2);
                // col 2 only 2*1.5 = 3 agrees with + -> 3/2; col 3 -> 3/1; col 4 -> 3/1
                use weighted = MergeRules.Ties(b, xs, lst [ 1.0; 2.0; 1.0 ], lst [ 1.0; 1.0; 1.0 ])
                expectClose weighted [ 10.0 + 5.0 / 3.0; 11.5; 13.0; 13.0 ] "weights 1, 2, 1"
                use scaled = MergeRules.Ties(b, xs, lst [ 1.0; 1.0; 1.0 ], lst [ 1.0; 1.0; 1.0 ], lambda = 2.0)
                expectClose scaled [ 13.0; 7.0; 16.0; 16.0 ] "lambda 2"

            testCase "DARE keeps the delta in expectation (1/density rescale), and L1 rescale matches the norm" <| fun _ ->
                use tau = t [ 0.5f; -1.0f; 2.0f; 0.25f; -0.75f; 1.5f; -2.0f; 1.0f; 0.1f; -0.3f; 0.6f; -1.2f; 0.9f; 0.0f; 1.1f; -0.4f ]
                use sum = torch.zeros_like(tau)
                let n = 2000
                for s in 1 .. n do
                    use g = new torch.Generator(uint64 s)
                    use d = MergeRules.DropAndRescale(tau, 0.5, g)
                    sum.add_(d) |> ignore
                use mean = sum / float32 n
                // per-entry std of the mean is |tau| / sqrt(n) = 0.045 |tau|; 0.15 |tau|max is over 3 sigma
                Expect.isLessThan (maxAbsDiff mean tau) 0.3 "mean over 2000 seeds"
                use g = new torch.Generator(7UL)
                use l1 = MergeRules.DropAndRescale(tau, 0.5, g, RescaleMode.L1)
                Expect.floatClose Accuracy.medium (l1.abs().sum().item<float32>() |> float) (tau.abs().sum().item<float32>() |> float) "L1 norm kept"

            testCase "DARE through the merge: reproducible from the generator seeds" <| fun _ ->
                use b = t [ 0.0f; 0.0f; 0.0f; 0.0f ]
                use x = t tau1
                use r1 = MergeRules.Dare(b, lst [ x ], lst [ 1.0 ], lst [ 0.5 ], gens [ 3 ], ties = false)
                use r2 = MergeRules.Dare(b, lst [ x ], lst [ 1.0 ], lst [ 0.5 ], gens [ 3 ], ties = false)
                Expect.equal (maxAbsDiff r1 r2) 0.0 "same seed, same merge"
                for v, orig in Array.zip (values r1) (List.toArray tau1) do
                    Expect.isTrue (v = 0.0 || abs (v - 2.0 * float orig) < 1e-6) $"entry {v} is 0 or 2 tau"

            testCase "SLERP: endpoints at t 0 and 1, normalised bisector of orthogonal unit vectors" <| fun _ ->
                use a = t [ 1.0f; 0.0f; 0.0f ]
                use b = t [ 0.0f; 1.0f; 0.0f ]
                use r0 = MergeRules.Slerp(a, b, 0.0)
                use r1 = MergeRules.Slerp(a, b, 1.0)
                use rh = MergeRules.Slerp(a, b, 0.5)
                expectClose r0 [ 1.0; 0.0; 0.0 ] "t = 0"
                expectClose r1 [ 0.0; 1.0; 0.0 ] "t = 1"
                expectClose rh [ 1.0 / sqrt 2.0; 1.0 / sqrt 2.0; 0.0 ] "t = 0.5"
                use c = t [ 2.0f; 0.0f; 0.0f ]
                use rc = MergeRules.Slerp(a, c, 0.25)
                expectClose rc [ 1.25; 0.0; 0.0 ] "colinear: lerp"

            testCase "model stock: t = N cos / (1 + (N-1) cos) on two task vectors at cos 0.5" <| fun _ ->
                Expect.floatClose Accuracy.high (MergeRules.ModelStockRatio(0.5, 2)) (2.0 / 3.0) "ratio"
                use b = t [ 1.0f; 1.0f ]
                use x1 = t [ 2.0f; 1.0f ]                                   // tau (1, 0)
                use x2 = t [ 1.5f; 1.0f + float32 (sqrt 3.0 / 2.0) ]        // tau (0.5, sqrt3/2): cos 0.5
                use r = MergeRules.ModelStock(b, lst [ x1; x2 ])
                // t mean + (1-t) base = base + t mean(tau) = (1 + 2/3 * 0.75, 1 + 2/3 * sqrt3/4)
                expectClose r [ 1.5; 1.0 + sqrt 3.0 / 6.0 ] "merged"

            testCase "breadcrumbs by hand: drop the top gamma and the smallest" <| fun _ ->
                use b = torch.zeros(10L)
                use x = t [ 0.1f; -0.2f; 0.3f; -0.4f; 0.5f; -0.6f; 0.7f; -0.8f; 0.9f; -1.0f ]
                // n 10, density 0.5 keeps 5, gamma 0.1 drops the largest (-1.0), then the 4 smallest
                use r = MergeRules.Breadcrumbs(b, lst [ x ], lst [ 1.0 ], lst [ 0.5 ], lst [ 0.1 ])
                expectClose r [ 0.0; 0.0; 0.0; 0.0; 0.5; -0.6; 0.7; -0.8; 0.9; 0.0 ] "kept the middle"

            testCase "magnitude ranks by hand: exactly k kept, equal magnitudes at the cut taken in order of position" <| fun _ ->
                // magnitudes 3, 1, 2, 2, 2, 0.5: the 3 largest are 3 and the first two 2s
                use tau = t [ 3.0f; -1.0f; 2.0f; -2.0f; 2.0f; 0.5f ]
                use top = MergeRules.TopK(tau, 0.5)
                expectClose top [ 3.0; 0.0; 2.0; -2.0; 0.0; 0.0 ] "TIES trim keeps 3 of 6"
                // ranks [1, 4): the three 2s (the 3 is dropped as the largest, 1 and 0.5 as the smallest)
                use window = MagnitudeRanks.KeepWindow(tau, 1L, 3L)
                expectClose window [ 0.0; 0.0; 2.0; -2.0; 2.0; 0.0 ] "rank window"
                use zeros = t [ 0.0f; 0.0f; 0.0f; 0.0f ]
                use z = MergeRules.TopK(zeros, 0.5)
                expectClose z [ 0.0; 0.0; 0.0; 0.0 ] "all equal: zeros stay zeros"
                use big = torch.randn([| 1000L |], generator = new torch.Generator(5UL))
                use kept = MergeRules.TopK(big, 0.1)
                Expect.equal (kept.ne(torch.tensor(0.0f)).sum().item<int64>()) 100L "100 of 1000 kept"
                let smallestKept = kept.abs().masked_select(kept.ne(torch.tensor(0.0f))).min().item<float32>()
                let largestDropped = big.abs().masked_select(kept.eq(torch.tensor(0.0f))).max().item<float32>()
                Expect.isGreaterThan smallestKept largestDropped "every kept magnitude above every dropped one"

            testCase "della by hand: rank-linear keep probabilities, kept entries scaled by 1/p" <| fun _ ->
                use tau = t [ 0.1f; -0.4f; 0.2f; 0.3f ]
                use p = MergeRules.KeepProbabilities(tau, 0.5, 0.2)
                // magnitude ranks 0, 3, 1, 2 of 3 -> 0.3 + 0.4 r / 3
                expectClose p [ 0.3; 0.7; 0.3 + 0.4 / 3.0; 0.3 + 0.8 / 3.0 ] "probabilities"
                let pv = values p
                use g = new torch.Generator(11UL)
                use pruned = MergeRules.MagPrune(tau, 0.5, 0.2, g)
                for i, v in Array.indexed (values pruned) do
                    let expected = float (values tau).[i] / pv.[i]
                    Expect.isTrue (v = 0.0 || abs (v - expected) < 1e-5) $"entry {i}: {v} is 0 or tau/p = {expected}"
                use sum = torch.zeros_like(tau)
                for s in 1 .. 2000 do
                    use g = new torch.Generator(uint64 s)
                    use d = MergeRules.MagPrune(tau, 0.5, 0.2, g)
                    sum.add_(d) |> ignore
                use mean = sum / 2000.0f
                Expect.isLessThan (maxAbsDiff mean tau) 0.05 "unbiased"
        ]

        testList "delta edits" [
            testCase "1-bit delta: sign times mean magnitude" <| fun _ ->
                use tau = t [ 1.0f; -3.0f; 2.0f; -2.0f; 0.0f ]
                use r = DeltaEdit.SignScale(tau)
                expectClose r [ 1.6; -1.6; 1.6; -1.6; 0.0 ] "mean |tau| = 8/5"

            testCase "low-rank delta keeps the largest singular direction; extrapolation" <| fun _ ->
                use tau = t2 [ [ 3.0f; 0.0f ]; [ 0.0f; 1.0f ] ]
                use r = DeltaEdit.LowRank(tau, 1)
                expectClose r [ 3.0; 0.0; 0.0; 0.0 ] "rank 1"
                use b = t [ 1.0f; 1.0f ]
                use x = t [ 2.0f; 0.0f ]
                use e = DeltaEdit.Extrapolate(b, x, 1.5)
                expectClose e [ 2.5; -0.5 ] "theta0 + 1.5 tau"

            testCase "LoRA extraction: B @ A equals tau when rank(tau) <= r" <| fun _ ->
                use u = t2 [ [ 1.0f; 0.0f ]; [ 2.0f; 1.0f ]; [ 0.0f; -1.0f ]; [ 1.0f; 3.0f ]; [ -2.0f; 0.5f ]; [ 0.5f; 0.5f ] ]
                use v = t2 [ [ 1.0f; -1.0f; 0.0f; 2.0f; 0.5f ]; [ 0.0f; 1.0f; 1.0f; -1.0f; 2.0f ] ]
                use tau = u.matmul(v)                                        // (6, 5), rank 2
                for r in [ 2; 3 ] do
                    let struct (a, bm) = DeltaEdit.ExtractLora(tau, r)
                    use a = a
                    use bm = bm
                    Expect.equal a.shape [| int64 r; 5L |] "A is (r, in)"
                    Expect.equal bm.shape [| 6L; int64 r |] "B is (out, r)"
                    use back = bm.matmul(a)
                    Expect.isLessThan (maxAbsDiff back tau) 1e-4 $"rank {r}"
        ]

        testList "config" [
            testCase "YAML and JSON parse to the same record" <| fun _ ->
                let yaml = """
merge_method: dare_ties   # DARE then TIES
base_model: base
models:
  - model: a
    parameters:
      weight: 0.5
      density: [1, 0.7, 0.1]
  - model: "b"
    parameters: {weight: 1, density: 0.5}
  - model: c
    parameters:
      weight:
        - filter: mlp
          value: 0.5
        - filter: "re:layers\\.1\\."
          value: [0, 1]
        - value: 0
parameters:
  lambda: 1.2
  normalize: true
  rescale: l1
  int8_mask: true
dtype: bfloat16
seed: 42
"""
                let json = """
{ "merge_method": "dare_ties", "base_model": "base",
  "models": [
    { "model": "a", "parameters": { "weight": 0.5, "density": [1, 0.7, 0.1] } },
    { "model": "b", "parameters": { "weight": 1, "density": 0.5 } },
    { "model": "c", "parameters": { "weight": [ { "filter": "mlp", "value": 0.5 },
                                                { "filter": "re:layers\\.1\\.", "value": [0, 1] },
                                                { "value": 0 } ] } } ],
  "parameters": { "lambda": 1.2, "normalize": true, "rescale": "l1", "int8_mask": true },
  "dtype": "bfloat16", "seed": 42 }
"""
                let y = MergeConfig.FromYaml yaml
                let j = MergeConfig.FromJson json
                Expect.equal y j "same record"
                Expect.equal y.Method MergeMethod.DareTies "method"
                Expect.equal y.Rescale (Nullable RescaleMode.L1) "rescale"
                let c = y.Models.[2].Parameters.["weight"]
                Expect.equal (c.Evaluate("model.layers.0.mlp.up_proj.weight", 0.0)) (Nullable 0.5) "substring filter"
                Expect.equal (c.Evaluate("model.layers.1.self_attn.q_proj.weight", 0.5)) (Nullable 0.5) "regex filter, gradient midpoint"
                Expect.equal (c.Evaluate("model.norm.weight", 0.0)) (Nullable 0.0) "fallback"
                let d = y.Models.[0].Parameters.["density"]
                Expect.floatClose Accuracy.high (d.Evaluate("x", 0.75).Value) 0.4 "gradient 0.7 -> 0.1 halfway"

            testCase "unknown keys are named" <| fun _ ->
                throwsWith<InvalidDataException> (fun () -> MergeConfig.FromYaml "merge_methd: ties\nbase_model: a\n" |> ignore)
                    [ "unknown key 'merge_methd'" ] "top level"
                throwsWith<InvalidDataException>
                    (fun () -> MergeConfig.FromYaml "merge_method: ties\nbase_model: a\nmodels:\n  - model: b\n    parameters:\n      wieght: 1\n" |> ignore)
                    [ "unknown key 'models[0].parameters.wieght'" ] "model parameter"
                throwsWith<InvalidDataException> (fun () -> MergeConfig.FromJson """{"merge_method": "linear", "models": [{"model": "a"}], "parameters": {"lamda": 1}}""" |> ignore)
                    [ "unknown key 'parameters.lamda'" ] "json global parameter"

            testCase "NaN, infinite weights, all-zero weight sums and densities outside (0, 1] are refused, naming the YAML line" <| fun _ ->
                let ties (models: string) = $"merge_method: ties\nbase_model: base\nmodels:\n{models}"
                let one (ps: string) = $"  - model: a\n    parameters: {{{ps}}}\n"
                throwsWith<InvalidDataException> (fun () -> MergeConfig.FromYaml (ties (one "weight: NaN")) |> ignore)
                    [ "YAML line 5"; "models[0].parameters.weight"; "finite" ] "NaN weight"
                throwsWith<InvalidDataException> (fun () -> MergeConfig.FromYaml (ties (one "weight: 1e999")) |> ignore)
                    [ "YAML line 5"; "finite" ] "an infinite weight"
                throwsWith<InvalidDataException> (fun () -> MergeConfig.FromYaml (ties "  - model: a\n    parameters:\n      weight: [0, -Infinity]\n") |> ignore)
                    [ "YAML line 6"; "finite" ] "an infinite knot of a gradient"
                throwsWith<InvalidDataException> (fun () -> MergeConfig.FromYaml (ties (one "weight: 0") + "  - model: b\n    parameters: {weight: 0.0}\n") |> ignore)
                    [ "YAML line 5"; "weight is 0" ] "all-zero weights"
                throwsWith<InvalidDataException>
                    (fun () -> MergeConfig.FromYaml "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\n  - model: b\n    parameters: {weight: -1}\n" |> ignore)
                    [ "YAML line 4"; "sum to 0" ] "weights summing to zero under normalize"
                for d in [ "0"; "-0.5"; "1.5"; "NaN" ] do
                    throwsWith<InvalidDataException> (fun () -> MergeConfig.FromYaml (ties (one $"weight: 1, density: {d}")) |> ignore)
                        [ "YAML line 5"; "density" ] $"density {d}"
                throwsWith<InvalidDataException> (fun () -> MergeConfig.FromYaml (ties (one "weight: 1") + "parameters:\n  density: [0.5, 0]\n") |> ignore)
                    [ "YAML line 7"; "parameters.density"; "(0, 1]" ] "a global density gradient reaching 0"
                throwsWith<InvalidDataException> (fun () -> MergeConfig.FromJson """{"merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 0}}]}""" |> ignore)
                    [ "weight is 0" ] "JSON too"
                // the same values are fine without normalize, and densities of 1 are fine
                MergeConfig.FromYaml "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: a\n    parameters: {weight: 1}\n  - model: b\n    parameters: {weight: -1}\n" |> ignore
                MergeConfig.FromYaml (ties (one "weight: 1, density: 1")) |> ignore

            testCase "deep nesting is a clear error, not a stack overflow" <| fun _ ->
                let deepFlow = "merge_method: " + String.replicate 100000 "[" + String.replicate 100000 "]"
                throwsWith<InvalidDataException> (fun () -> YamlTree.Parse deepFlow |> ignore) [ "YAML line 1"; "nesting deeper than" ] "flow lists"
                let deepBlock = String.Join("\n", [ for i in 0 .. 5000 -> String.replicate i " " + "k:" ])
                throwsWith<InvalidDataException> (fun () -> YamlTree.Parse deepBlock |> ignore) [ "nesting deeper than" ] "block maps"
                let deepItems = String.Join("\n", [ for i in 0 .. 5000 -> String.replicate (2 * i) " " + "-" ])
                throwsWith<InvalidDataException> (fun () -> YamlTree.Parse deepItems |> ignore) [ "nesting deeper than" ] "block lists"
                // 32 levels still parse
                let ok = "a: " + String.replicate 32 "[" + String.replicate 32 "]"
                Expect.isNotNull (YamlTree.Parse ok) "moderate nesting parses"

            testCase "re: filters cannot hang: the non-backtracking engine, and constructs it lacks refused at load" <| fun _ ->
                let rule = ParamRule("re:^(a+)+$", lst [ 1.0 ])
                let name = String.replicate 40 "a" + "!"
                let work = Threading.Tasks.Task.Run(fun () -> rule.Matches name)
                Expect.isTrue (work.Wait(TimeSpan.FromSeconds 10.0)) "a catastrophic-backtracking pattern ends"
                Expect.isFalse work.Result "and does not match"
                Expect.isTrue (ParamRule("re:layers\\.1\\.", lst [ 1.0 ]).Matches "model.layers.1.mlp.up_proj.weight") "ordinary patterns still match"
                throwsWith<InvalidDataException>
                    (fun () -> MergeConfig.FromYaml "merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: [{filter: \"re:(a)\\\\1\", value: 1}, {value: 1}]\n" |> ignore)
                    [ "YAML line 5"; "filter"; "not supported" ] "a backreference"
        ]

        // Sequenced: the process's RSS, which the merge-memory test samples.
        testSequenced <| testList "streaming" [
            testCase "two micro checkpoints: streamed merge equals the in-memory merge; shards + index; loads" <| fun _ ->
                let root = tempDir "merge"
                let a = saveMicro (Path.Combine(root, "a")) 1L
                let b = saveMicro (Path.Combine(root, "b")) 2L
                let c = saveMicro (Path.Combine(root, "c")) 3L
                let yaml =
                    $"merge_method: dare_ties\nbase_model: {a}\nmodels:\n  - model: {b}\n    parameters: {{weight: 0.7, density: 0.5}}\n  - model: {c}\n    parameters:\n      weight: [0.2, 0.8]\n      density: 0.6\nseed: 5\n"
                let config = MergeConfig.FromYaml yaml
                let out = Path.Combine(root, "out")
                let sw = Diagnostics.Stopwatch.StartNew()
                let report = StreamingMerge.Run(config, out, 20_000L)
                printfn "streaming merge of 3 micro models: %d tensors, %d shards, peak %d tensors / %d bytes held, %d ms"
                    report.Tensors report.Shards report.PeakOpenTensors report.PeakOpenBytes sw.ElapsedMilliseconds
                Expect.isGreaterThan report.Shards 1 "sharded"
                Expect.isTrue (File.Exists(Path.Combine(out, Safetensors.IndexFileName))) "index written"
                // 3 inputs + merged + cast: nothing beyond the tensor in hand
                Expect.isLessThanOrEqual report.PeakOpenTensors 5 "few tensors at once"
                let merged = Safetensors.LoadDirectory out
                let wa = Safetensors.LoadDirectory a
                let wb = Safetensors.LoadDirectory b
                let wc = Safetensors.LoadDirectory c
                let layers = 2
                for KeyValue(name, m) in merged do
                    use expected = StreamingMerge.MergeTensor(config, name, StreamingMerge.LayerPosition(name, layers), wa.[name], lst [ wb.[name]; wc.[name] ])
                    Expect.equal (maxAbsDiff m expected) 0.0 name
                Expect.equal merged.Count wa.Count "every tensor"
                // the sharded output read back as an input (through its index): linear of it with itself
                let viaIndex = MergeConfig.FromYaml $"merge_method: linear\nmodels:\n  - model: {out}\n  - model: {out}\n"
                let out3 = Path.Combine(root, "via-index")
                StreamingMerge.Run(viaIndex, out3) |> ignore
                let back = Safetensors.LoadDirectory out3
                for KeyValue(name, v) in back do Expect.isLessThan (maxAbsDiff v merged.[name]) 1e-6 $"sharded input {name}"
                for d in [ merged; wa; wb; wc; back ] do for x in d.Values do x.Dispose()
                let struct (model, _) = Checkpoint.Load out
                model.Dispose()
                // linear of a model with itself, single shard: the same weights back
                let same = MergeConfig.FromYaml $"merge_method: linear\nmodels:\n  - model: {a}\n  - model: {a}\n    parameters: {{weight: 3}}\n"
                let out2 = Path.Combine(root, "same")
                StreamingMerge.Run(same, out2) |> ignore
                Expect.isTrue (File.Exists(Path.Combine(out2, Safetensors.SingleFileName))) "one file"
                let x = Safetensors.LoadDirectory out2
                let y = Safetensors.LoadDirectory a
                for KeyValue(name, v) in x do Expect.isLessThan (maxAbsDiff v y.[name]) 1e-6 name
                Directory.Delete(root, true)

            testCase "research merge CONFIG --out DIR" <| fun _ ->
                let root = tempDir "merge-cli"
                let a = saveMicro (Path.Combine(root, "a")) 1L
                let b = saveMicro (Path.Combine(root, "b")) 2L
                let cfg = Path.Combine(root, "merge.yml")
                File.WriteAllText(cfg, $"merge_method: slerp\nbase_model: {a}\nmodels:\n  - model: {b}\nparameters:\n  t: [0, 1]\n")
                let out = Path.Combine(root, "out")
                Expect.equal (Research.Cli.Commands.MergeCommand.Execute [| "merge"; cfg; "--out"; out |]) 0 "exit 0"
                Expect.isTrue (Checkpoint.Exists out) "checkpoint written"
                Expect.equal (Research.Cli.Commands.MergeCommand.Execute [| cfg; "--outt"; out |]) 2 "unknown option"
                File.WriteAllText(cfg, "merge_method: slerp\nbogus: 1\n")
                Expect.equal (Research.Cli.Commands.MergeCommand.Execute [| cfg |]) 1 "bad config"
                Directory.Delete(root, true)

            testCase "errors name the tensor, the shape, the vocabulary" <| fun _ ->
                let root = tempDir "merge-err"
                let a = saveMicro (Path.Combine(root, "a")) 1L
                let missing = rewrite a (Path.Combine(root, "missing")) (fun w -> w |> Seq.filter (fun p -> p.Key <> "model.norm.weight"))
                let shaped =
                    rewrite a (Path.Combine(root, "shaped")) (fun w ->
                        w |> Seq.map (fun p -> if p.Key = "model.norm.weight" then kv p.Key (torch.ones(16L)) else p))
                let vocab = Path.Combine(root, "vocab")
                (use m = new CausalLM(ModelConfig(VocabSize = 300, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2,
                                                          NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64), 4L)
                 Checkpoint.Save(vocab, m, ByteTokenizer.Instance))
                let run other =
                    let cfg = MergeConfig.FromYaml $"merge_method: task_arithmetic\nbase_model: {a}\nmodels:\n  - model: {other}\n"
                    StreamingMerge.Run(cfg, Path.Combine(root, "out")) |> ignore
                throwsWith<InvalidDataException> (fun () -> run missing) [ "'model.norm.weight'"; "missing" ] "missing tensor"
                throwsWith<InvalidDataException> (fun () -> run shaped) [ "'model.norm.weight'"; "shape mismatch"; "[32]"; "[16]" ] "shape"
                throwsWith<InvalidDataException> (fun () -> run vocab) [ "vocabularies differ"; "model.embed_tokens.weight"; "259"; "300" ] "vocab"
                Expect.isFalse (Directory.Exists(Path.Combine(root, "out"))) "nothing written"
                Directory.Delete(root, true)
        ]
    ]

// ---------------------------------------------------------------------------------------------------------------
// The claimed directions at tiny scale: two task fine-tunes of one base, merged, beat each single model on the union of
// both tasks; DARE at drop 0.9 keeps most of it. And the merge peak-memory measurement of `research bench`.

open System.Text.Json.Nodes
open Research.Stages
open Research.Training
open Research.Bench

/// Prompt "<tag>:<x>=": task u upper-cases a letter a..h, task d adds one to a digit 0..7; the base learns c, copying
/// either. The two tasks touch disjoint token rows, as two skills of one model would.
let private taskLines (tag: char) (seed: int64) (n: int) =
    let rng = Rng(seed)
    [ for _ in 1 .. n ->
        let letter = char (int 'a' + rng.NextInt 8)
        let digit = char (int '0' + rng.NextInt 8)
        let x, answer =
            match tag with
            | 'u' -> string letter, string (Char.ToUpperInvariant letter)
            | 'd' -> string digit, string (char (int digit + 1))
            | _ -> let x = (if rng.NextInt 2 = 0 then string letter else string digit) in ignore (rng.NextInt 2); x, x
        let o = JsonObject()
        o["prompt"] <- JsonValue.Create($"{tag}:{x}=")
        o["completion"] <- JsonValue.Create(answer)
        o.ToJsonString() ]

let private tuneQuick steps lr =
    TrainConfig(Steps = steps, BatchSize = 16, LearningRate = lr, WarmupSteps = 5, WeightDecay = 0.0, LogEvery = 10, EvalEvery = 0, CheckpointEvery = 0)

/// Argmax accuracy over completion tokens (answer + EOS) and mean loss per token of a checkpoint on JSONL lines.
let private taskScore (checkpoint: string) (lines: string list) =
    let examples = lines |> List.mapi (fun i l -> SftData.Parse(l, "held-out", i + 1)) |> List.toArray
    let s = Research.Eval.CompletionAccuracy.Score(checkpoint, examples, 16)
    s.Accuracy, s.Loss

type private TaskWorkspace = { Root: string; Base: string; A: string; B: string; Heldout: string list }

let private taskWorkspace =
    lazy (
        let root = tempDir "merge-tasks"
        let write name lines = let p = Path.Combine(root, name) in File.WriteAllLines(p, (lines: string list)); p
        let start = saveMicro (Path.Combine(root, "init")) 3L
        let tune name parent data steps lr =
            let c = StageContext(name, Path.Combine(root, name), [| parent |], [||], 5L, torch.CPU, TextWriter.Null)
            let o = TuneOptions(DataPath = data, BlockLength = 12, Packing = false, ValidationFraction = 0.05, Train = tuneQuick steps lr)
            TuneExecutor().Execute(c, o) |> ignore
            c.FinalCheckpoint
        let baseDir = tune "base" start (write "copy.jsonl" (taskLines 'c' 1L 400)) 150 1e-2
        { Root = root; Base = baseDir
          A = tune "task-u" baseDir (write "u.jsonl" (taskLines 'u' 2L 400)) 60 1e-3
          B = tune "task-d" baseDir (write "d.jsonl" (taskLines 'd' 3L 400)) 60 1e-3
          Heldout = taskLines 'u' 12L 100 @ taskLines 'd' 13L 100 })

let private mergeOf (ws: TaskWorkspace) (name: string) (o: MergeStageOptions) =
    let out = Path.Combine(ws.Root, name)
    StreamingMerge.Run(o.ToConfig(lst [ ws.Base; ws.A; ws.B ], 5L), out) |> ignore
    out

[<Tests>]
let taskTests =
    // In Groups.inProcess: trains in this process, one list at a time, beside the lists that train in child processes.
    testSequencedGroup Groups.inProcess <| testList "Merge" [
        testList "tasks" [
            testCase "two task fine-tunes merged by task arithmetic and TIES beat each alone on both tasks; DARE 0.9 keeps most" <| fun _ ->
                let ws = taskWorkspace.Force()
                let score dir = taskScore dir ws.Heldout
                let (accA, _), (accB, _), (accBase, _) = score ws.A, score ws.B, score ws.Base
                let ta = mergeOf ws "ta" (MergeStageOptions(Method = MergeMethod.TaskArithmetic, Weights = [| 1.0; 1.0 |]))
                let ties = mergeOf ws "ties" (MergeStageOptions(Method = MergeMethod.Ties, Weights = [| 1.0; 1.0 |], Density = Nullable 0.5))
                let dare = mergeOf ws "dare" (MergeStageOptions(Method = MergeMethod.DareLinear, Weights = [| 1.0; 1.0 |], Density = Nullable 0.1))
                let (accTa, lossTa), (accTies, lossTies), (accDare, lossDare) = score ta, score ties, score dare
                printfn "merge directions (tiny), union accuracy: base %.3f, upper-case %.3f, digit+1 %.3f, task arithmetic %.3f (loss %.3f), TIES %.3f (loss %.3f), DARE 0.9 %.3f (loss %.3f)"
                    accBase accA accB accTa lossTa accTies lossTies accDare lossDare
                let best = max accA accB
                Expect.isGreaterThan accTa best "task arithmetic beats each single model on the union"
                Expect.isGreaterThan accTies best "TIES beats each single model on the union"
                Expect.isGreaterThanOrEqual accDare (0.8 * accTa) "DARE at drop 0.9 (rescaled) keeps >= 80% of task arithmetic's accuracy"
        ]
        testList "memory" [
            testCase "the merge peak-memory measurement: anonymous RSS growth sampled, bound = 1.5 x (largest tensor + shard), shards respected" <| fun _ ->
                let cfg = ModelConfig(VocabSize = 259, HiddenSize = 128, IntermediateSize = 352, NumHiddenLayers = 4, NumAttentionHeads = 4,
                                      NumKeyValueHeads = 2, MaxPositionEmbeddings = 64, TieWordEmbeddings = false)
                let results = MergeMemory.RunMany(cfg, 1_000_000L, lst [ MergeMethod.Ties; MergeMethod.DareLinear ], Console.Out)
                for r in results do
                    Expect.isGreaterThan r.Samples 0 $"{r.Method}: sampled while merging"
                    Expect.isGreaterThan r.Shards 1 $"{r.Method}: sharded output"
                    Expect.isLessThanOrEqual r.OutputShardBytes (1_000_000L + r.LargestTensorBytes) "a shard exceeds the limit by at most one tensor"
                    Expect.equal r.BoundBytes (int64 (1.5 * float (r.LargestTensorBytes + r.OutputShardBytes))) "bound"
                    Expect.floatClose Accuracy.high r.Ratio (float r.PeakAnonGrowthBytes / float (r.LargestTensorBytes + r.OutputShardBytes)) "ratio = anonymous growth / (tensor + shard)"
                    Expect.isGreaterThanOrEqual r.PeakRssBytes r.BaselineRssBytes "peak >= baseline"
                    Expect.isFalse r.Judged $"a {r.BoundBytes} B bound is within RSS noise: no verdict printed"
                    Expect.stringContains r.Verdict "not a verdict" "says so"
        ]
    ]
