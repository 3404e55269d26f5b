// Miniature reproduction: DPO, LN-DPO, SimPO and KTO from one SFT model on length-biased preference pairs.
// Papers: "Direct Preference Optimization: Your Language Model is Secretly a Reward Model" (Rafailov et al., 2023);
// "The Hitchhiker's Guide to Human Alignment with *PO" (LN-DPO); "SimPO: Simple Preference Optimization with a
// Reference-Free Reward" (Meng et al., 2024); "KTO: Model Alignment as Prospect Theoretic Optimization" (Ethayarajh et al., 2024).
// Claimed directions: every method raises held-out preference accuracy over the SFT model; length-normalising DPO's
// log-ratios (LN-DPO) removes DPO's incentive to lengthen, so its answers are shorter than DPO's when the preference
// data carries a length bias (chosen answers longer than rejected ones, as in real preference data).
//   research run scripts/repro-preference.fsx [--tiny] [--seeds 5] [--out DIR] [--world-seed 7] [--data closings|length-biased|world]
//                                            [--sft-data questions|all] [--sft-closing 0.5] [--general-docs 1500]
//                                            [--pretrain-steps 200] [--tune-steps 200] [--tune-lr 1e-3] [--align-steps 40]
//                                            [--align-lr 1e-4] [--beta 0.1] [--ln-beta B] [--generations 32] [--generation-tokens 64] [--samples 16] [--top-p 1]
// SFT model: tuned on the world's question instructions (--sft-data all: every instruction) with the closing line
// " I hope this helps." on a seeded share (--sft-closing) of the answers, so it has a real stop-or-continue choice after
// an answer. --data closings (default): every chosen answer ends with the closing line, the rejected answer is a
// short bad one ending with a short sign-off (see pairsFile); --data world: the world's pairs as they are (chosen answers are the concise ones).
// KTO trains on the same pairs as unpaired labels (chosen desirable, rejected undesirable: the world's unpaired.jsonl);
// held-out pairs stay pairs, so every method is scored on the same held-out pairs. Same beta (0.1), LR and steps for all,
// except the length-normalised LN-DPO and SimPO, whose beta is on the per-token scale: beta x the pairs' mean response
// tokens (see lnBeta; --ln-beta sets it).
// Length = mean tokens of --samples answers sampled at temperature 1 per held-out prompt (up to --generations prompts; sample j
// of prompt i uses the same seed for every model: common random numbers), taken as its expectation along each sampled path
// (the stop decisions integrated out exactly: the same mean, less noisy; ResponseLength in the runtime); the plain sampled
// mean, the share of samples that ran to the token cap and the greedy length (a step function of the logits) are printed too. Writes DIR/preference-accuracy.{html,png,svg,pdf}, DIR/preference-length.{html,png,svg,pdf}, DIR/preference.{tex,md}.
// Preference accuracy is the implicit reward's (beta (dc - dr) > 0 on held-out pairs, as TRL's rewards/accuracies); the SFT
// model is its own reference, so its implicit reward is 0 on every pair: chance, 0.5. The per-token likelihood accuracy
// (mean log-prob of chosen above rejected's), where the SFT model has a value of its own, is printed as a secondary check.
// Every branch is trained under each of --seeds seeds (1..N: initialisation, data order, sampling); each claim is judged
// on the numbers paired by seed (Claims: 95% t interval, paired t, Wilcoxon), and DIR/preference-claims.{tex,md} holds them.
// Exit code 0 when the primary claims held (accuracy up for every method; LN-DPO's expected sampled length below DPO's), 3 when not.
#if !RESEARCH_HOST
#load "research.fsx"
#endif
open System.IO
open System.Text.Json
open Research
open Research.Models
open Research.Stages

let args = fsi.CommandLineArgs
let tiny = Array.contains "--tiny" args
let arg name fallback = Script.arg args name fallback
let seed = arg "world-seed" 7   // the world and the SFT data; the training seeds are 1..--seeds
let seeds = arg "seeds" 5
let outDir = arg "out" "repro-preference"
let dataKind = arg "data" "closings"
let beta = arg "beta" 0.1
let alignSteps = arg "align-steps" (if tiny then 15 else 40)
let sftClosing = arg "sft-closing" 0.5
let samples = arg "samples" 16
let topP = arg "top-p" 1.0

let world = World.create (arg "general-docs" (if tiny then 600 else 1500)) seed

/// The length-biased pairs: every chosen answer ends with a closing line; the rejected answer is the world's short bad
/// answer (a wrong fact, the wrong format) and, for a "verbose" pair, the concise answer to the same question about the
/// next company (a wrong fact). --data closings (default): the rejected answer ends with a short sign-off (" Thanks.")
/// where the chosen one ends with the long closing line, so both answers go on after the answer and stop after a
/// sign-off, and the pairs differ in length by the sign-off (and by the answer); --data length-biased: the rejected answer
/// stops right after the answer, so pushing it down also pushes down stopping there (at --tiny that makes LN-DPO, which
/// weighs the shorter rejected answer's tokens more, the longer one at 3 of 5 seeds; docs/methods/align.md).
/// Chosen and rejected are two answers, never one the other's prefix: with a shared prefix
/// (the concise answer rejected against itself plus the closing line) LN-DPO's per-token averages push the shared answer
/// down (1/|yc| - 1/|yr| < 0 on its tokens), which at this scale makes samples longer, not shorter.
let closing = " I hope this helps."
/// The pairs as (prompt, chosen, rejected): the world's as they are, or rewritten as described above.
let pairs =
    let world' = Seq.toArray world.World.Preferences
    match dataKind with
    | "world" -> [ for p in world' -> p.Prompt, p.Chosen, p.Rejected ]
    | "closings" | "length-biased" ->
        let shortClosing = if dataKind = "closings" then " Thanks." else ""
        // The world writes one pair per question of each company, in question order: i + questions is the same question, next company.
        let questions = Seq.length (Research.Data.Synthetic.WorldTasks.Questions(Seq.head world.World.Entities.TrainCompanies))
        [ for i, p in Array.indexed world' ->
            let rejected = if p.Kind = "verbose" then world'[(i + questions) % world'.Length].Chosen else p.Rejected
            p.Prompt, p.Chosen + closing, rejected + shortClosing ]
    | other -> failwithf "--data must be closings, length-biased or world (got %s)" other
let pairsFile =
    if dataKind = "world" then world.Preferences   // the world's own file holds exactly these pairs
    else
        let path = Path.Combine(Path.GetDirectoryName world.Preferences, $"preferences-{dataKind}.jsonl")
        let lines = [ for prompt, chosen, rejected in pairs -> JsonSerializer.Serialize({| prompt = prompt; chosen = chosen; rejected = rejected |}) ]
        Research.Runs.AtomicFile.WriteAllText(path, String.concat "\n" lines + "\n")
        path

/// Mean response length of the pairs in tokens (the tokenizer is byte-level: UTF-8 bytes, plus the EOS).
let meanResponseTokens =
    pairs |> List.collect (fun (_, chosen, rejected) -> [ chosen; rejected ])
    |> List.averageBy (fun a -> float (System.Text.Encoding.UTF8.GetByteCount a + 1))
/// LN-DPO's log-ratios are per-token means, so at DPO's beta its loss barely leaves log 2 (the margin is |y| times
/// smaller) and its implied KL pressure is |y| times weaker; beta x mean response tokens puts it on DPO's scale (the *PO
/// guide sweeps each method's beta; SimPO's paper puts its length-normalised beta at 2 to 2.5). --ln-beta sets it directly.
let lnBeta = arg "ln-beta" (System.Math.Round(beta * meanResponseTokens, 2))
/// The beta of each branch: the length-normalised objectives (LN-DPO, SimPO) on the per-token scale, the others DPO's.
let branchBeta label = if label = "LN-DPO" || label = "SimPO" then lnBeta else beta

/// --tiny: a micro model (64 wide, 2 layers) so the whole comparison runs in seconds; otherwise the tiny default.
let model =
    if tiny then ModelConfig(HiddenSize = 64, IntermediateSize = 176, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 192)
    else tinyModel ()
let start =
    pretrain world.General model |> Stage.steps (arg "pretrain-steps" (if tiny then 10 else 200)) |> Stage.evalEvery 0
/// The SFT data: the world's question instructions (--sft-data all: every instruction) with the closing line on a seeded
/// share (--sft-closing) of the answers, so the SFT model has a real stop-or-continue choice after an answer to move.
let sftData = arg "sft-data" "questions"
let sftFile =
    if sftClosing <= 0.0 && sftData = "all" then world.Instructions
    else
        let rng = Research.Data.Rng(Research.Data.Rng.Derive(int64 seed, System.ReadOnlySpan<int64>([| 0xC105EL |])))
        let path = Path.Combine(Path.GetDirectoryName world.Instructions, $"instructions-{sftData}-closing-{sftClosing}.jsonl")
        let isQuestion (turns: Research.Data.Synthetic.Turn[]) = turns |> Array.exists (fun t -> t.Role = "user" && (t.Content.StartsWith "What is" || t.Content.StartsWith "Who is"))
        let kept =
            match sftData with
            | "all" -> Seq.toList world.World.Instructions
            | "questions" -> world.World.Instructions |> Seq.filter isQuestion |> Seq.toList
            | other -> failwithf "--sft-data must be questions or all (got %s)" other
        let lines =
            [ for turns in kept ->
                let msgs =
                    [| for t in turns ->
                        let content = if t.Role = "assistant" && rng.NextDouble() < sftClosing then t.Content + closing else t.Content
                        {| role = t.Role; content = content |} |]
                JsonSerializer.Serialize({| messages = msgs |}) ]
        Research.Runs.AtomicFile.WriteAllText(path, String.concat "\n" lines + "\n")
        path
let sft =
    tune sftFile |> Stage.steps (arg "tune-steps" 200) |> Stage.lr (arg "tune-lr" (if tiny then 2e-3 else 1e-3))
    |> Stage.evalEvery 0 |> Stage.named "sft"

/// One align branch: the same data, steps, beta and held-out split; only the objective differs.
let method (name: string) (objective: Preference) =
    align pairsFile
    |> Align.loss objective
    |> Align.validationFraction 0.2
    |> Align.generations (arg "generations" 32) (arg "generation-tokens" (if tiny then 48 else 64))
    |> Align.samples samples 1.0 topP
    |> Stage.steps alignSteps
    |> Stage.lr (arg "align-lr" 1e-4)
    |> Stage.evalEvery 0
    |> Stage.checkpointEvery alignSteps
    |> Stage.named name

let methods =
    [ "DPO", method "dpo" (Dpo (branchBeta "DPO"))
      "LN-DPO", method "ln-dpo" (LnDpo (branchBeta "LN-DPO"))
      "SimPO", method "simpo" (SimPo (branchBeta "SimPO", 0.5))
      "KTO", method "kto" (Kto (branchBeta "KTO")) ]

let result =
    Experiment.createBranches "repro-preference" start (fun s -> branch (List.map snd methods) (sft s))
    |> Experiment.seeds [ for s in 1 .. seeds -> int64 s ]
    |> Experiment.runIn (arg "workspace" (Experiment.defaultWorkspace ()))

/// One method's held-out numbers from its align stage's last validation.
type Row = { Method: string; PerToken: float; Implicit: float; Margin: float; Greedy: float; Sampled: float; Expected: float; Capped: float; Kl: float }
/// The SFT model's row and one row per method, for one run (one seed). The SFT model's implicit reward is 0 on every
/// pair: chance, 0.5.
let rowsOf (run: Research.Pipelines.RunResult) =
    let metric (node: string) (key: string) = run.Node(node).Metrics.TryGetValue key |> function | true, v -> v | _ -> nan
    let sftRow =
        { Method = "SFT"; PerToken = metric "dpo" "val_ref_avg_logp_accuracy"; Implicit = 0.5; Margin = 0.0
          Greedy = metric "dpo" "val_ref_gen_length"; Sampled = metric "dpo" "val_ref_sample_length"
          Expected = metric "dpo" "val_ref_expected_length"; Capped = metric "dpo" "val_ref_sample_capped"; Kl = 0.0 }
    sftRow :: [ for label, _ in methods ->
                  let m = metric (label.ToLowerInvariant())
                  // val_margin is beta (dc - dr) with the branch's own beta: put every one on the common beta so the column compares.
                  { Method = label; PerToken = m "val_avg_logp_accuracy"; Implicit = m "val_pref_accuracy"; Margin = m "val_margin" * beta / branchBeta label
                    Greedy = m "val_gen_length"; Sampled = m "val_sample_length"
                    Expected = m "val_expected_length"; Capped = m "val_sample_capped"; Kl = m "val_kl_ref" } ]
let bySeed = [ for run in result.Runs -> run.Seed, rowsOf run ]
/// A column of one method's row, per seed.
let per (name: string) (f: Row -> float) = bySeed |> List.map (fun (sd, rs) -> sd, rs |> List.find (fun r -> r.Method = name) |> f) |> Map.ofList
let names = "SFT" :: List.map fst methods
let mean name f = (Claims.summary (per name f)).Mean
let caption = (Claims.summary (per "SFT" (fun r -> r.Expected))).Describe()

Figures.capabilityByStage $"Held-out preference accuracy ({caption})" "share of held-out pairs"
    ([ for n in names -> "per-token likelihood accuracy", n, mean n (fun r -> r.PerToken) ]
     @ [ for n in List.tail names -> "implicit-reward accuracy", n, mean n (fun r -> r.Implicit) ])
|> Figures.save outDir "preference-accuracy" |> ignore
Figures.capabilityByStage $"Mean length of answers to held-out prompts ({samples} samples at temperature 1 per prompt: expected, as drawn; greedy; {caption})" "tokens (bytes) before EOS"
    ([ for n in names -> "expected (sampled paths)", n, mean n (fun r -> r.Expected) ] @ [ for n in names -> "sampled", n, mean n (fun r -> r.Sampled) ]
     @ [ for n in names -> "greedy", n, mean n (fun r -> r.Greedy) ])
|> Figures.save outDir "preference-length" |> ignore

let cell name f = Tables.intervalCell (Claims.summary (per name f))
let table =
    { Header = [ "method"; "per-token accuracy"; "implicit-reward accuracy"; $"reward margin (beta {beta})"; "expected length"; "sampled length"; "share at cap"; "greedy length"; "KL estimate" ]
      Rows = [ for n in names ->
                 [ box n; cell n (fun r -> r.PerToken); cell n (fun r -> r.Implicit); cell n (fun r -> r.Margin); cell n (fun r -> r.Expected)
                   cell n (fun r -> r.Sampled); cell n (fun r -> r.Capped); cell n (fun r -> r.Greedy); cell n (fun r -> r.Kl) ] ] }
Tables.save outDir "preference" $"Preference methods from one SFT model ({dataKind} pairs, beta {beta}, LN-DPO and SimPO beta {lnBeta}, {alignSteps} steps; {caption}): held-out per-token likelihood accuracy, implicit-reward accuracy and margin, mean length of sampled answers ({samples} per prompt, temperature 1: expected along each path, as drawn, share at the token cap) and of greedy answers, per-token KL estimate to the SFT model" "tab:preference" table |> ignore
printfn "%s" (Tables.markdown table)

let chance = per "SFT" (fun _ -> 0.5)
printfn "data: %s pairs (mean response %.1f tokens); SFT answers with the closing line: %g; beta %g (LN-DPO, SimPO %g); %d align steps from one SFT model; %d seeds" dataKind meanResponseTokens sftClosing beta lnBeta alignSteps seeds
printfn "claim (DPO, LN-DPO, SimPO, KTO papers): every method raises held-out preference accuracy over the SFT model"
printfn "claim (Hitchhiker's Guide to *PO): LN-DPO's mean response length is below DPO's on the same data"
let expected (r: Row) = r.Expected
let primary =
    [ for n, _ in methods ->
        Claims.paired $"implicit-reward accuracy, {n} above chance" $"accuracy({n}) - 0.5 (the SFT model's)" Above (per n (fun r -> r.Implicit)) chance ]
    @ [ Claims.paired "mean expected length of sampled answers, LN-DPO below DPO" "length(LN-DPO) - length(DPO)" Below (per "LN-DPO" expected) (per "DPO" expected) ]
let secondary =
    [ for n, _ in methods ->
        Claims.paired $"secondary: per-token likelihood accuracy, {n} above SFT" $"per-token accuracy({n}) - per-token accuracy(SFT)" Above (per n (fun r -> r.PerToken)) (per "SFT" (fun r -> r.PerToken)) ]
    @ [ Claims.paired "secondary: DPO on length-biased pairs lengthens sampled answers" "length(DPO) - length(SFT)" Above (per "DPO" expected) (per "SFT" expected)
        Claims.paired "secondary: SimPO (length-normalised) below DPO" "length(SimPO) - length(DPO)" Below (per "SimPO" expected) (per "DPO" expected) ]
let verdicts = Claims.report (primary @ secondary)
printfn "as drawn (not a verdict): SFT %.2f, DPO %.2f, LN-DPO %.2f; share at the cap: SFT %.3f, DPO %.3f, LN-DPO %.3f"
    (mean "SFT" (fun r -> r.Sampled)) (mean "DPO" (fun r -> r.Sampled)) (mean "LN-DPO" (fun r -> r.Sampled)) (mean "SFT" (fun r -> r.Capped)) (mean "DPO" (fun r -> r.Capped)) (mean "LN-DPO" (fun r -> r.Capped))
Tables.save outDir "preference-claims" $"Preference methods: claims over {seeds} seeds (paired by seed)" "tab:preference-claims" (Claims.table verdicts) |> ignore
printfn "figures and tables in %s" (Path.GetFullPath outDir)
if not (primary |> List.forall (fun v -> v.Held)) then exit 3
