// Model merging at quick-start scale: one base (taught to copy a letter or a digit), two task fine-tunes (upper-case a
// letter; add one to a digit: two skills on disjoint tokens), merged by
// task arithmetic, TIES and DARE (drop 0.9). Claims: each merge scores above each single model on the union of both
// tasks (exact match of greedy answers), and DARE at drop 0.9 keeps at least 80% of task arithmetic's score.
//   dotnet fsi scripts/merge-tasks.fsx -- --seed 7 --base-steps 400 --task-steps 200
// (after `dotnet build -c Release src/Research.Cli`). Exit code 3 when a claimed direction does not hold.
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open System
open System.IO
open System.Text.Json.Nodes
open TorchSharp
open Research
open Research.Data
open Research.Models
open Research.Stages
open Research.Stages.Merge
open Research.Training

let arg name fallback = Script.arg fsi.CommandLineArgs name fallback
let seed = arg "seed" 7
let root = Path.Combine(Path.GetTempPath(), "research-merge-tasks", $"seed-{seed}")
if Directory.Exists root then Directory.Delete(root, true)
Directory.CreateDirectory root |> ignore

/// Prompt "<tag>:<x>=": u upper-cases a letter a..l, d adds one to a digit 0..8, c copies either.
let lines (tag: char) (s: int64) (n: int) =
    let rng = Rng(s)
    [ for _ in 1 .. n ->
        let letter = char (int 'a' + rng.NextInt 12)
        let digit = char (int '0' + rng.NextInt 9)
        let x, answer =
            match tag with
            | 'u' -> string letter, string (Char.ToUpperInvariant letter)
            | 'd' -> string digit, string (char (int digit + 1))
            | _ -> let x = (if rng.NextInt 2 = 0 then string letter else string digit) in x, x
        let o = JsonObject()
        o["prompt"] <- JsonValue.Create($"{tag}:{x}=")
        o["completion"] <- JsonValue.Create(answer)
        o.ToJsonString() ]
let write name (xs: string list) = let p = Path.Combine(root, name) in File.WriteAllLines(p, xs); p

let config steps lr =
    TrainConfig(Steps = steps, BatchSize = 32, LearningRate = lr, WarmupSteps = 20, WeightDecay = 0.0, LogEvery = 50, EvalEvery = 0, CheckpointEvery = 0)
let tune name parent data steps lr =
    let c = StageContext(name, Path.Combine(root, name), [| parent |], [||], int64 seed, torch.CPU, TextWriter.Null)
    TuneExecutor().Execute(c, TuneOptions(DataPath = data, BlockLength = 16, Packing = false, ValidationFraction = 0.02, Train = config steps lr)) |> ignore
    c.FinalCheckpoint

let init = Path.Combine(root, "init")
(use m = new LlamaForCausalLM(LlamaConfig.Tiny(), int64 seed) in Checkpoint.Save(init, m, ByteTokenizer.Instance))
let baseDir = tune "base" init (write "copy.jsonl" (lines 'c' 1L 4000)) (arg "base-steps" 400) 3e-3
let taskA = tune "task-upper" baseDir (write "upper.jsonl" (lines 'u' 2L 4000)) (arg "task-steps" 200) 1e-3
let taskB = tune "task-digit" baseDir (write "digit.jsonl" (lines 'd' 3L 4000)) (arg "task-steps" 200) 1e-3
let heldout = lines 'u' 12L 200 @ lines 'd' 13L 200 |> List.mapi (fun i l -> SftData.Parse(l, "held-out", i + 1)) |> List.toArray

let exact dir =
    let struct (m, tok) = Checkpoint.Load dir
    use m = m
    let struct (hit, total) = Tune.ExactMatch(m, tok, ChatTemplates.Plain, heldout, 8)
    float hit / float total

let merge name (o: MergeStageOptions) =
    let out = Path.Combine(root, name)
    StreamingMerge.Run(o.ToConfig([| baseDir; taskA; taskB |], int64 seed), out) |> ignore
    out

let scores =
    [ "base", baseDir; "upper-case only", taskA; "digit+1 only", taskB
      "task arithmetic", merge "ta" (MergeStageOptions(Method = MergeMethod.TaskArithmetic, Weights = [| 1.0; 1.0 |]))
      "ties (density 0.5)", merge "ties" (MergeStageOptions(Method = MergeMethod.Ties, Weights = [| 1.0; 1.0 |], Density = Nullable 0.5))
      "dare (drop 0.9)", merge "dare" (MergeStageOptions(Method = MergeMethod.DareLinear, Weights = [| 1.0; 1.0 |], Density = Nullable 0.1)) ]
    |> List.map (fun (name, dir) -> name, exact dir)
printfn "\nexact match on the union of both tasks (%d held-out prompts):" heldout.Length
for name, s in scores do printfn "  %-20s %.3f" name s
let score name = scores |> List.find (fst >> (=) name) |> snd
let best = max (score "upper-case only") (score "digit+1 only")
let claims =
    [ "task arithmetic > each single model", score "task arithmetic" > best
      "TIES > each single model", score "ties (density 0.5)" > best
      "DARE 0.9 keeps >= 80% of task arithmetic", score "dare (drop 0.9)" >= 0.8 * score "task arithmetic" ]
for name, held in claims do printfn "  %s: %s" name (if held then "holds" else "DOES NOT HOLD")
if not (claims |> List.forall snd) then
    eprintfn "merge-tasks: a claimed direction did not hold (see above)"
    exit 3
