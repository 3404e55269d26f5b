/// The merge-method registry: one entry per method, every entry wired to the YAML reader, the checks, the rule, the F#
/// union and the docs page.
module Research.Tests.MergeMethodTests

open System
open System.IO
open Expecto
open Microsoft.FSharp.Reflection
open TorchSharp
open Research.Stages.Merge
open Research.Tests.TestUtil

let private markers = "<!-- merge-methods:begin -->", "<!-- merge-methods:end -->"

/// A YAML config for the spec with the models it needs (two where it may), the first with `firstParams` (YAML flow
/// map entries), and under `parameters` the given entries, then its required parameters at 0.5 unless given.
let private config (spec: MergeMethodSpec) (firstParams: string) (globals: (string * string) list) =
    let others = if spec.MaxOthers.HasValue && spec.MaxOthers.Value < 2 then spec.MaxOthers.Value else max spec.MinOthers 2
    let models =
        [ for i in 1 .. others -> $"  - model: m{i}\n" + (if i = 1 && firstParams <> "" then $"    parameters: {{{firstParams}}}\n" else "") ]
    let given = set (List.map fst globals)
    let globals = globals @ [ for p in spec.Required do if not (given.Contains p) then p, "0.5" ]
    $"merge_method: {spec.Name}\n" + (if spec.NeedsBase then "base_model: base\n" else "") + "models:\n" + String.concat "" models
    + "parameters:\n" + String.concat "" [ for k, v in globals -> $"  {k}: {v}\n" ] + "  int8_mask: true\n"

/// A value of each F# settings record field, so that every union case can be built.
let private sample (t: Type) =
    if t = typeof<unit> then box ()
    else FSharpValue.MakeRecord(t, [| for _ in FSharpType.GetRecordFields t -> box 0.5 |])

/// Fixed small tensors: a base and two models whose task vectors differ in sign and magnitude per entry.
let private inputs () =
    let b = torch.linspace(-1.0, 1.0, 64L).reshape(8L, 8L)
    let a = b + torch.sin(torch.arange(64L).reshape(8L, 8L).to_type(torch.float32) * 0.7f) * 0.3f
    let c = b - torch.cos(torch.arange(64L).reshape(8L, 8L).to_type(torch.float32) * 1.3f) * 0.2f
    b, [| a; c |]

/// The tensor a YAML config merges from the fixed tensors (the base first among the models for a method without one).
let private merge (yaml: string) =
    let c = MergeConfig.FromYaml yaml
    let b, thetas = inputs ()
    let models = if c.Spec.NeedsBase then thetas else Array.append [| b |] thetas
    StreamingMerge.MergeTensor(c, "model.layers.0.mlp.up_proj.weight", 0.0, (if c.Spec.NeedsBase then b else null), Array.truncate c.Merged.Count models)

[<Tests>]
let tests =
    testList "MergeMethods" [
        testCase "every method has one entry, in enum order, with a unique name" <| fun _ ->
            Expect.sequenceEqual [ for s in MergeMethods.All -> s.Method ] (List.ofArray (Enum.GetValues<MergeMethod>())) "one entry per enum value, in order"
            Expect.equal ([ for s in MergeMethods.All -> s.Name ] |> List.distinct |> List.length) MergeMethods.All.Count "unique names"
            for s in MergeMethods.All do
                Expect.equal (MergeMethods.Named s.Name |> Option.ofObj |> Option.map (fun x -> x.Method)) (Some s.Method) $"{s.Name} is found by name"
                for p in s.Parameters do
                    Expect.isTrue (MergeMethods.Parameters |> Seq.exists (fun q -> q.Name = p)) $"{s.Name} reads a known parameter {p}"
                Expect.isTrue (s.Required |> Seq.forall s.Reads) $"{s.Name} reads what it requires"
                Expect.isNonEmpty s.Paper $"{s.Name} names its paper"

        testCase "each method's minimal YAML config reads back as that method" <| fun _ ->
            for s in MergeMethods.All do
                let c = MergeConfig.FromYaml(config s "" [])
                Expect.equal c.Method s.Method s.Name
                Expect.equal c.EffectiveNormalize s.NormalizeByDefault $"{s.Name}: normalize default"
                Expect.equal (MergeConfig.FromJson(c.ToJson())) c $"{s.Name}: canonical JSON round-trips"

        testCase "a parameter the method does not read is an error with its YAML line" <| fun _ ->
            for s in MergeMethods.All do
                for p in MergeMethods.Parameters do
                    if not (s.Reads p.Name) then
                        throwsWith<InvalidDataException> (fun () -> MergeConfig.FromYaml(config s "" [ p.Name, "0.5" ]) |> ignore)
                            [ "YAML line"; $"does not read '{p.Name}'"; s.Name ] $"{s.Name} given {p.Name}"
                if not s.TakesRescale then
                    throwsWith<InvalidDataException> (fun () -> MergeConfig.FromYaml(config s "" [ "rescale", "l1" ]) |> ignore)
                        [ "YAML line"; "does not rescale" ] $"{s.Name} given rescale"

        testCase "every parameter a method reads changes its merge" <| fun _ ->
            let alternatives = dict [ "weight", (1.0, 3.0); "density", (1.0, 0.4); "gamma", (0.01, 0.3); "epsilon", (0.05, 0.35); "lambda", (1.0, 0.5); "t", (0.2, 0.8) ]
            for s in MergeMethods.All do
                for p in s.Parameters do
                    let x, y = alternatives.[p]
                    // A weight changes a normalized sum only relative to the others': give it to the first model alone.
                    let merged (v: float) =
                        // At density 1 nothing is dropped, so gamma and epsilon would have nothing to act on.
                        let sparse = if p <> "density" && s.Reads "density" then [ "density", "0.5" ] else []
                        if p = "weight" then merge (config s $"weight: {v}" sparse) else merge (config s "" ((p, string v) :: sparse))
                    use a = merged x
                    use b = merged y
                    Expect.isFalse (a.allclose(b, 1e-6, 1e-7)) $"{s.Name}: {p} {x} and {y} give different merges"

        testCase "a stage's options are checked by the same registry" <| fun _ ->
            let o = Research.Stages.MergeStageOptions(Method = MergeMethod.TaskArithmetic, Density = Nullable 0.5)
            throwsWith<InvalidDataException> (fun () -> o.ToConfig([| "base"; "a" |], 0L).Validate() |> ignore)
                [ "task_arithmetic does not read 'density'" ] "density on task arithmetic"
            let slerp = Research.Stages.MergeStageOptions(Method = MergeMethod.Slerp)
            throwsWith<InvalidDataException> (fun () -> slerp.ToConfig([| "base"; "a" |], 0L).Validate() |> ignore)
                [ "slerp needs parameters.t" ] "slerp without t"

        testCase "the F# Merge union names every method of the registry" <| fun _ ->
            let methods =
                [ for case in FSharpType.GetUnionCases typeof<Research.Merge> ->
                    let arg = case.GetFields() |> Array.map (fun f -> sample f.PropertyType)
                    let m = FSharpValue.MakeUnion(case, arg) :?> Research.Merge
                    (Research.MergeDsl.mergeOptions m).Method ]
            Expect.sequenceEqual (List.sort methods) (List.ofArray (Enum.GetValues<MergeMethod>()) |> List.sort) "one case per method, none twice"

        testCase "docs/methods/merge.md holds the registry's table" <| fun _ ->
            let page = File.ReadAllText(Path.Combine(repoRoot, "docs", "methods", "merge.md"))
            let b, e = markers
            let i, j = page.IndexOf b, page.IndexOf e
            Expect.isTrue (i >= 0 && j > i) $"the page has the markers {b} ... {e}"
            let table = page.Substring(i + b.Length, j - i - b.Length).Trim('\n')
            Expect.equal table (MergeMethods.MarkdownTable().TrimEnd('\n')) "regenerate the table from MergeMethods.MarkdownTable()"
    ]
