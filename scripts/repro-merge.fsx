// Miniature reproduction: merging two task fine-tunes of one base by task arithmetic, TIES and DARE.
// Papers: "Editing Models with Task Arithmetic" (Ilharco et al., 2023); "TIES-Merging: Resolving Interference When
// Merging Models" (Yadav et al., 2023); "Language Models are Super Mario: Absorbing Abilities from Homologous Models
// as a Free Lunch" (Yu et al., 2024; DARE). Claimed directions: a merge of the two fine-tunes scores above each single
// fine-tune on the union of both tasks; DARE, dropping 90% of each task vector and rescaling the rest by 1/0.1, keeps
// at least 80% of task arithmetic's score.
// Setup: a base taught to copy a letter or a digit ("c:x=" -> x); task u upper-cases a letter, task d adds one to a
// digit (two skills on disjoint tokens), each a supervised fine-tune of the base; score = answer accuracy (teacher-forced
// argmax over the answer and end-of-text tokens) on held-out prompts of both tasks. The fine-tunes use a small learning rate (the DARE paper's setting: supervised
// fine-tunes whose deltas are small; see docs/methods/merge.md for why DARE fails on large deltas).
// --tiny (about 30 s): a 2-layer, 64-wide model on one thread; letters i..p (no tag among them); the base also copies
// the symbols the tasks answer with; the task fine-tunes take batches of 64; lambda in {0.75, 1, 1.25}.
// docs/methods/merge.md says why each of these.
//   research run scripts/repro-merge.fsx [--tiny] [--seeds 5] [--out DIR] [--base-steps 400] [--task-steps 300]
//                                        [--task-lr 2e-4] [--base-lr 3e-3]
// The whole recipe (base, the two fine-tunes, every merge) runs under each of --seeds seeds (1..N: initialisation and
// data order; the prompts are fixed); each claim is judged on held-out scores paired by seed (Claims).
// Each method's merge coefficient lambda is chosen on separate validation prompts, as Ilharco et al. choose it; the
// claims compare held-out scores at the chosen lambda.
// Writes DIR/merge-coefficient-sweep.{html,png,svg,pdf} (held-out score against lambda, one line per method, the single
// fine-tunes as flat references; means over the seeds), DIR/merge-tasks.{tex,md} (every model and lambda, then each
// method's chosen lambdas, mean ± 95% t half-width) and DIR/merge-claims.{tex,md}.
// Exit code 0 when every claimed direction held, 3 when one did not.
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

let args = fsi.CommandLineArgs
let tiny = Array.contains "--tiny" args
let arg name fallback = Script.arg args name fallback
let seeds = arg "seeds" 5
let outDir = arg "out" "repro-merge"
// A model this small runs fastest on one intra-op thread, and one thread gives the same numbers on every machine.
if tiny && String.IsNullOrEmpty(Environment.GetEnvironmentVariable "RESEARCH_THREADS") then torch.set_num_threads 1
/// Prompt "<tag>:<x>=": u upper-cases a letter a..l (i..p at --tiny), d adds one to a digit 0..8 (0..7), c copies either.
/// At --tiny no tag is one of the letters: with a..h the upper-case fine-tune also capitalised the tag of "d:3=", and
/// the merges answered "D" to digit prompts (seed 5; docs/methods/merge.md).
let letters, digits = (if tiny then 8 else 12), (if tiny then 8 else 9)
let firstLetter = if tiny then 'i' else 'a'
let lines (tag: char) (s: int64) (n: int) =
    let rng = Rng(s)
    [ for _ in 1 .. n ->
        let letter = char (int firstLetter + rng.NextInt letters)
        let digit = char (int '0' + rng.NextInt digits)
        let x, answer =
            match tag with
            | 'u' -> string letter, string (Char.ToUpperInvariant letter)
            | 'd' -> string digit, string (char (int digit + 1))
            | _ when tiny ->
                // At --tiny the base copies every symbol either task answers with (I..P, 0..8) as well, so neither
                // fine-tune has to teach the shared end of text after a new symbol (see docs/methods/merge.md).
                let x =
                    match rng.NextInt 4 with
                    | 0 -> string letter
                    | 1 -> string (Char.ToUpperInvariant letter)
                    | _ -> string (char (int '0' + rng.NextInt (digits + 1)))
                x, x
            | _ -> let x = (if rng.NextInt 2 = 0 then string letter else string digit) in x, x
        let o = JsonObject()
        o["prompt"] <- JsonValue.Create($"{tag}:{x}=")
        o["completion"] <- JsonValue.Create(answer)
        o.ToJsonString() ]

let model =
    if tiny then ModelConfig(VocabSize = 259, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4,
                             NumKeyValueHeads = 2, MaxPositionEmbeddings = 64)
    else ModelConfig.Tiny()
/// The recipe under one seed: the single models' and every merge's scores, and each method's chosen lambda.
let runSeed (seed: int64) =
    let root = Path.Combine(arg "workspace" (Experiment.defaultWorkspace ()), "repro-merge", $"seed-{seed}")
    if Directory.Exists root then Directory.Delete(root, true)
    Directory.CreateDirectory root |> ignore

    let write name (xs: string list) = let p = Path.Combine(root, name) in File.WriteAllLines(p, xs); p

    let config steps lr batch =
        TrainConfig(Steps = steps, BatchSize = batch, LearningRate = lr, WarmupSteps = 20, WeightDecay = 0.0, LogEvery = 50, EvalEvery = 0, CheckpointEvery = 0)
    let tune name parent data steps lr batch =
        let c = StageContext(name, Path.Combine(root, name), [| parent |], [||], seed, torch.CPU, TextWriter.Null)
        TuneExecutor().Execute(c, TuneOptions(DataPath = data, BlockLength = (if tiny then 12 else 16), Packing = false, ValidationFraction = 0.02, Train = config steps lr batch)) |> ignore
        c.FinalCheckpoint

    let init = Path.Combine(root, "init")
    (use m = new CausalLM(model, seed) in Checkpoint.Save(init, m, ByteTokenizer.Instance))
    let examples = if tiny then 400 else 4000
    let baseDir = tune "base" init (write "copy.jsonl" (lines 'c' 1L examples)) (arg "base-steps" 400) (arg "base-lr" 3e-3) (if tiny then 16 else 32)
    let taskSteps, taskLr = arg "task-steps" 300, arg "task-lr" 2e-4
    /// The task fine-tunes take batches of 64 at --tiny: with 16 (measured on a 32-wide model) the gradient noise moves
    /// weights the task does not need about as much as the task does (AdamW normalizes every update), and the two noisy
    /// task vectors no longer add up (docs/methods/merge.md).
    let taskBatch = if tiny then 64 else 32
    let taskA = tune "task-upper" baseDir (write "upper.jsonl" (lines 'u' 2L examples)) taskSteps taskLr taskBatch
    let taskB = tune "task-digit" baseDir (write "digit.jsonl" (lines 'd' 3L examples)) taskSteps taskLr taskBatch
    let heldoutCount = if tiny then 100 else 200
    let prompts a b = lines 'u' a heldoutCount @ lines 'd' b heldoutCount |> List.mapi (fun i l -> SftData.Parse(l, "held-out", i + 1)) |> List.toArray
    /// Validation prompts choose each method's merge coefficient (as Ilharco et al. choose lambda); test prompts score it.
    let validation, heldout = prompts 22L 23L, prompts 12L 13L

    /// Answer accuracy: the share of completion tokens (the answer and the end of text) that the model's argmax predicts,
    /// teacher-forced, over the held-out prompts of both tasks (one batched forward pass).
    let score (examples: SftExample[]) dir = Research.Eval.CompletionAccuracy.Score(dir, examples, 16).Accuracy
    let accuracy dir = score heldout dir

    let merge name (o: MergeStageOptions) =
        let out = Path.Combine(root, name)
        StreamingMerge.Run(o.ToConfig([| baseDir; taskA; taskB |], seed), out) |> ignore
        out

    let methods =
        [ "task arithmetic", (fun l -> MergeStageOptions(Method = MergeMethod.TaskArithmetic, Weights = [| 1.0; 1.0 |], Lambda = Nullable l))
          "TIES (density 0.5)", (fun l -> MergeStageOptions(Method = MergeMethod.Ties, Weights = [| 1.0; 1.0 |], Density = Nullable 0.5, Lambda = Nullable l))
          "DARE (drop 0.9)", (fun l -> MergeStageOptions(Method = MergeMethod.DareLinear, Weights = [| 1.0; 1.0 |], Density = Nullable 0.1, Lambda = Nullable l)) ]
    let lambdas = if tiny then [ 0.75; 1.0; 1.25 ] else [ 0.25; 0.5; 0.75; 1.0; 1.25 ]
    let singles = [ "base", accuracy baseDir; "upper-case only", accuracy taskA; "digit+1 only", accuracy taskB ]
    let merged =
        [ for name, options in methods do
            for l in lambdas ->
                let dir = merge (sprintf "%s-%g" (name.Split(' ')[0]) l) (options l)
                name, l, score validation dir, accuracy dir ]

    /// Each method at the coefficient with the best validation accuracy (the first of equals).
    let chosen =
        [ for name, _ in methods ->
            let _, l, _, test = merged |> List.filter (fun (n, _, _, _) -> n = name) |> List.maxBy (fun (_, l, v, _) -> v, -l)
            name, l, test ]
    singles, merged, chosen

let perSeed = [ for sd in 1 .. seeds -> int64 sd, runSeed (int64 sd) ]
let singlesOf name = perSeed |> List.map (fun (sd, (ss, _, _)) -> sd, ss |> List.find (fst >> (=) name) |> snd) |> Map.ofList
let mergedOf name l f = perSeed |> List.map (fun (sd, (_, ms, _)) -> sd, ms |> List.find (fun (n, l', _, _) -> n = name && l' = l) |> f) |> Map.ofList
let chosenOf name = perSeed |> List.map (fun (sd, (_, _, cs)) -> sd, cs |> List.find (fun (n, _, _) -> n = name)) |> Map.ofList
let methodNames = [ "task arithmetic"; "TIES (density 0.5)"; "DARE (drop 0.9)" ]
let lambdas = perSeed |> List.head |> snd |> fun (_, ms, _) -> ms |> List.map (fun (_, l, _, _) -> l) |> List.distinct
let singleNames = [ "base"; "upper-case only"; "digit+1 only" ]
let mean (xs: Map<int64, float>) = (Claims.summary xs).Mean
let caption = (Claims.summary (singlesOf "base")).Describe()
let table =
    { Header = [ "model"; "lambda"; "validation accuracy"; "answer accuracy" ]
      Rows = [ for name in singleNames -> [ box name; Tables.missing; Tables.missing; Tables.intervalCell (Claims.summary (singlesOf name)) ] ]
             @ [ for name in methodNames do
                   for l in lambdas ->
                       [ box name; box l; box (mean (mergedOf name l (fun (_, _, v, _) -> v))); Tables.intervalCell (Claims.summary (mergedOf name l (fun (_, _, _, s) -> s))) ] ]
             @ [ for name in methodNames ->
                   let cs = chosenOf name
                   [ box $"{name}, chosen lambda"; box (cs |> Map.values |> Seq.map (fun (_, l, _) -> sprintf "%g" l) |> String.concat " ")
                     Tables.missing; Tables.intervalCell (Claims.summary (cs |> Map.map (fun _ (_, _, s) -> s))) ] ] }
Tables.save outDir "merge-tasks" $"Merging two task fine-tunes: answer accuracy on held-out prompts of both tasks; lambda chosen on validation prompts per seed ({caption})" "tab:merge-tasks" table |> ignore
printfn "%s" (Tables.markdown table)
Figures.mergeSweep $"Merging two task fine-tunes: score against the merge coefficient ({caption})" "answer accuracy on both tasks"
    ([ for name in methodNames do for l in lambdas -> name, l, mean (mergedOf name l (fun (_, _, _, s) -> s)) ]
     @ [ for name in List.tail singleNames do for l in lambdas -> name, l, mean (singlesOf name) ])
|> Figures.save outDir "merge-coefficient-sweep" |> ignore

let at name = chosenOf name |> Map.map (fun _ (_, _, s) -> s)
/// The better single fine-tune of each seed: what a merge must beat.
let best = let digit = singlesOf "digit+1 only" in singlesOf "upper-case only" |> Map.map (fun sd u -> max u digit[sd])
printfn "claim (Ilharco et al., 2023; Yadav et al., 2023; Yu et al., 2024): merges beat each single fine-tune on the union of both tasks; DARE at drop 0.9 keeps >= 80%%; %d seeds" seeds
let verdicts =
    Claims.report
        [ Claims.paired "task arithmetic (chosen lambda) beats the best single fine-tune" "accuracy(task arithmetic) - accuracy(best single)" Above (at "task arithmetic") best
          Claims.paired "TIES (chosen lambda) beats the best single fine-tune" "accuracy(TIES) - accuracy(best single)" Above (at "TIES (density 0.5)") best
          Claims.paired "DARE at drop 0.9 keeps >= 80% of task arithmetic" "accuracy(DARE) - 0.8 accuracy(task arithmetic)" Above
              (at "DARE (drop 0.9)") (at "task arithmetic" |> Map.map (fun _ x -> 0.8 * x)) ]
Tables.save outDir "merge-claims" $"Merging: claims over {seeds} seeds (paired by seed)" "tab:merge-claims" (Claims.table verdicts) |> ignore
printfn "figure and tables in %s" (Path.GetFullPath outDir)
if not (verdicts |> List.forall (fun v -> v.Held)) then exit 3
