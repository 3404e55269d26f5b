// Distillation at quick-start scale: a teacher 4x the student's parameters is tuned on plenty of a noisy task (each
// prompt has several right answers with prompt-dependent probabilities); the same student is then trained on a small
// sample of that data, once on its hard labels and once distilled from the teacher (token-level GJSD; also on-policy and
// from a top-k cache). Claim: the distilled student has the lower held-out loss than the one on hard labels.
//   dotnet fsi scripts/distill.fsx -- --seed 7 --teacher-steps 600 --student-steps 300 --small 256
// (after `dotnet build -c Release src/Research.Cli`). Exit code 3 when the claimed direction does not hold.
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
open Research.Training

let arg name fallback = Script.arg fsi.CommandLineArgs name fallback
let seed = arg "seed" 7
let root = Path.Combine(Path.GetTempPath(), "research-distill", $"seed-{seed}")
if Directory.Exists root then Directory.Delete(root, true)
Directory.CreateDirectory root |> ignore

// 32 three-letter keys; key i is answered by one of four words with probabilities that depend on i.
let keys = [| for i in 0 .. 31 -> String [| char (int 'a' + i % 8); char (int 'a' + i / 8); 'q' |] |]
let words = [| "red"; "green"; "blue"; "gold" |]
let probs i =
    let z = [| for k in 0 .. 3 -> exp (-(float ((i * 7 + k * 5) % 11)) / 3.0) |]
    z |> Array.map (fun x -> x / Array.sum z)
let lines (s: int64) n =
    let rng = Rng(s)
    [ for j in 0 .. n - 1 ->
        let i = rng.NextInt keys.Length
        let u = rng.NextDouble()
        let p = probs i
        let k = p |> Array.scan (+) 0.0 |> Array.skip 1 |> Array.findIndex (fun c -> u < c) |> min 3
        let o = JsonObject()
        o["prompt"] <- JsonValue.Create($"{keys[i]}?")
        o["completion"] <- JsonValue.Create(words[k])
        o.ToJsonString() ]
let write name (xs: string list) = let p = Path.Combine(root, name) in File.WriteAllLines(p, xs); p

let config steps lr =
    TrainConfig(Steps = steps, BatchSize = 32, LearningRate = lr, WarmupSteps = 20, WeightDecay = 0.0, LogEvery = 50, EvalEvery = 0, CheckpointEvery = 0)
let ctx name parents = StageContext(name, Path.Combine(root, name), List.toArray parents, [||], int64 seed, torch.CPU, Console.Out)
let save name (cfg: LlamaConfig) =
    let dir = Path.Combine(root, name)
    (use m = new LlamaForCausalLM(cfg, int64 seed) in Checkpoint.Save(dir, m, ByteTokenizer.Instance))
    dir
let parameters dir =
    let struct (m, _) = Checkpoint.Load dir
    use m = m
    m.parameters() |> Seq.sumBy (fun p -> p.numel())

let student = save "student-init" (LlamaConfig.Tiny())
let teacherInit = save "teacher-init" (LlamaConfig(HiddenSize = 256, IntermediateSize = 704, NumHiddenLayers = 5, NumAttentionHeads = 4, NumKeyValueHeads = 2))
let ratio = float (parameters teacherInit) / float (parameters student)
let teacher =
    let c = ctx "teacher" [ teacherInit ]
    TuneExecutor().Execute(c, TuneOptions(DataPath = write "big.jsonl" (lines 1L 8000), BlockLength = 16, Packing = false, ValidationFraction = 0.02,
                                          Train = config (arg "teacher-steps" 600) 1e-3)) |> ignore
    c.FinalCheckpoint
let small = write "small.jsonl" (lines 2L (arg "small" 256))
let heldout = write "heldout.jsonl" (lines 3L 2000)

let loss dir =
    let struct (m, tok) = Checkpoint.Load dir
    use m = m
    let seqs = SftPreparation.Prepare(SftData.Read heldout, ChatTemplates.Plain, tok, 17, SftTruncation.KeepCompletion).Sequences
    Tune.Validate(m, seqs, 64, tok.PadId)["val_loss"]

let studentSteps = arg "student-steps" 300
let distill name (f: DistillStageOptions -> DistillStageOptions) =
    let c = ctx name [ student; teacher ]
    let o = DistillStageOptions(DataPath = small, BlockLength = 16, MaxNewTokens = 8, ValidationFraction = 0.05, Train = config studentSteps 1e-3)
    DistillExecutor().Execute(c, f o) |> ignore
    c.FinalCheckpoint
let set (field: string) (v: obj) (o: DistillStageOptions) = Research.Util.RecordCopy.With(o, field, v)
let kd (r: float) (o: DistillStageOptions) = set "Loss" (box (Research.Util.RecordCopy.With(o.Loss, "KdRatio", box r))) o

let results =
    [ "teacher", teacher
      "student, hard labels", distill "hard" (kd 0.0)
      "student, distilled (GJSD, kd 0.9)", distill "soft" (kd 0.9)
      "student, distilled, top-32 cache", distill "cached" (kd 0.9 >> set "TeacherTopK" (box 32))
      "student, on-policy lambda 0.5", distill "on-policy" (kd 0.9 >> set "OnPolicyLambda" (box 0.5))
      "student, sequence-level KD", distill "sequence" (set "SequenceLevel" (box true)) ]
    |> List.map (fun (name, dir) -> name, loss dir)
printfn "\nteacher / student parameters: %.2f" ratio
printfn "held-out loss per completion token (%s):" heldout
for name, l in results do printfn "  %-36s %.4f" name l
let get name = results |> List.find (fst >> (=) name) |> snd
let held = ratio >= 4.0 && get "student, distilled (GJSD, kd 0.9)" < get "student, hard labels"
printfn "  distilled student < student on hard labels (teacher >= 4x): %s" (if held then "holds" else "DOES NOT HOLD")
if not held then
    eprintfn "distill: the claimed direction did not hold (see above)"
    exit 3
