// Miniature reproduction: DPO, LN-DPO, SimPO and KTO from one SFT model on the world's preference pairs.
// Papers: "Direct Preference Optimization: Your Language Model is Secretly a Reward Model" (Rafailov et al., 2023);
// "The Hitchhiker's Guide to Human Alignment with *PO" (LN-DPO); "SimPO: Simple Preference Optimization with a
// Reference-Free Reward" (Meng et al., 2024); "KTO: Model Alignment as Prospect Theoretic Optimization" (Ethayarajh et al., 2024).
// Claimed directions: every method raises held-out preference accuracy over the SFT model; length-normalising DPO's
// log-ratios (LN-DPO) removes DPO's incentive to lengthen, so its answers are shorter than DPO's when the preference
// data carries a length bias (chosen answers longer than rejected ones, as in real preference data).
//   research run scripts/repro-preference.fsx [--tiny] [--out DIR] [--seed 7] [--data length-biased|world]
//                                            [--general-docs 1500] [--pretrain-steps 200] [--tune-steps 200] [--tune-lr 1e-3]
//                                            [--align-steps 40] [--align-lr 1e-4] [--beta 0.1] [--generations 24] [--generation-tokens 64]
// --data length-biased (default): the world's pairs with a closing line appended to every chosen answer (a
// "verbose" pair becomes the concise answer rejected against the same answer with the closing line), so chosen
// answers are systematically longer; --data world: the world's pairs as they are (chosen answers are the concise ones).
// KTO trains on the same pairs as unpaired labels (chosen desirable, rejected undesirable: the world's unpaired.jsonl);
// held-out pairs stay pairs, so every method is scored on the same held-out pairs.
// Writes DIR/preference-accuracy.{html,png,svg,pdf}, DIR/preference-length.{html,png,svg,pdf} and DIR/preference.{tex,md}.
// Preference accuracy is the implicit reward's (beta (dc - dr) > 0 on held-out pairs, as TRL's rewards/accuracies); the SFT
// model is its own reference, so its implicit reward is 0 on every pair: chance, 0.5. The per-token likelihood accuracy
// (mean log-prob of chosen above rejected's), where the SFT model has a value of its own, is printed as a secondary check.
// Exit code 0 when the primary claims held (accuracy up for every method; LN-DPO shorter than DPO), 3 when not.
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
let seed = arg "seed" 7
let outDir = arg "out" "repro-preference"
let dataKind = arg "data" "length-biased"
let beta = arg "beta" 0.1
let alignSteps = arg "align-steps" (if tiny then 15 else 40)

let world = World.create (arg "general-docs" (if tiny then 600 else 1500)) seed

/// The length-biased pairs: every chosen answer ends with a closing line; a "verbose" pair becomes the concise
/// answer (rejected) against the same answer with the closing line (chosen).
let closing = " I hope this helps."
let pairsFile =
    match dataKind with
    | "world" -> world.Preferences
    | "length-biased" ->
        let path = Path.Combine(Path.GetDirectoryName world.Preferences, "preferences-length-biased.jsonl")
        let lines =
            [ for p in world.World.Preferences ->
                let rejected = if p.Kind = "verbose" then p.Chosen else p.Rejected
                JsonSerializer.Serialize({| prompt = p.Prompt; chosen = p.Chosen + closing; rejected = rejected |}) ]
        Research.Runs.AtomicFile.WriteAllText(path, String.concat "\n" lines + "\n")
        path
    | other -> failwithf "--data must be length-biased or world (got %s)" other

/// --tiny: a micro model (64 wide, 2 layers) so the whole comparison runs in seconds; otherwise the tiny default.
let model =
    if tiny then LlamaConfig(HiddenSize = 64, IntermediateSize = 176, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 192)
    else tinyModel ()
let start =
    pretrain world.General model |> Stage.steps (arg "pretrain-steps" (if tiny then 10 else 200)) |> Stage.evalEvery 0
let sft =
    tune world.Instructions |> Step.steps (arg "tune-steps" (if tiny then 40 else 200)) |> Step.lr (arg "tune-lr" (if tiny then 2e-3 else 1e-3))
    |> Step.evalEvery 0 |> Step.named "sft"

/// One align branch: the same data, steps, beta and held-out split; only the objective differs.
let method (name: string) (mode: AlignMode) (loss: PreferenceLoss) =
    let pref = PreferenceOptions(Beta = beta, Losses = [| WeightedPreferenceLoss(loss) |])
    align pairsFile
    |> Step.config "Mode" (box mode)
    |> Step.config "Preference" (box pref)
    |> Step.config "ValidationFraction" (box 0.2)
    |> Step.config "Generations" (box (arg "generations" (if tiny then 8 else 24)))
    |> Step.config "GenerationTokens" (box (arg "generation-tokens" (if tiny then 48 else 64)))
    |> Step.steps alignSteps
    |> Step.lr (arg "align-lr" 1e-4)
    |> Step.evalEvery 0
    |> Step.checkpointEvery alignSteps
    |> Step.named name

let methods =
    [ "DPO", method "dpo" AlignMode.Paired PreferenceLoss.Sigmoid
      "LN-DPO", method "ln-dpo" AlignMode.Paired PreferenceLoss.SigmoidNorm
      "SimPO", method "simpo" AlignMode.SimPO PreferenceLoss.Sigmoid
      "KTO", method "kto" AlignMode.Kto PreferenceLoss.Sigmoid ]

let result =
    Experiment.createBranches "repro-preference" start (fun s -> branch (List.map snd methods) (sft s))
    |> Experiment.seed (int64 seed)
    |> Experiment.runIn (arg "workspace" (Experiment.defaultWorkspace ()))

let run = result.Runs[0]
let metric (node: string) (key: string) = run.Node(node).Metrics.TryGetValue key |> function | true, v -> v | _ -> nan
/// The SFT model's per-token preference on the held-out pairs (the same for every branch: one SFT parent).
let sftAccuracy = metric "dpo" "val_ref_avg_logp_accuracy"
let sftLength = metric "dpo" "val_ref_gen_length"
let rows =
    [ for label, _ in methods ->
        let node = label.ToLowerInvariant()
        label, metric node "val_avg_logp_accuracy", metric node "val_pref_accuracy", metric node "val_margin", metric node "val_gen_length", metric node "val_kl_ref" ]

Figures.capabilityByStage "Held-out preference accuracy (per-token log-likelihood ranks chosen above rejected)" "share of held-out pairs"
    ([ "per-token preference accuracy", "SFT", sftAccuracy ] @ [ for l, a, _, _, _, _ in rows -> "per-token preference accuracy", l, a ]
     @ [ for l, _, ir, _, _, _ in rows -> "implicit-reward accuracy", l, ir ])
|> Figures.save outDir "preference-accuracy" |> ignore
Figures.capabilityByStage "Mean length of greedy answers to held-out prompts" "tokens (bytes) before EOS"
    ([ "mean response length", "SFT", sftLength ] @ [ for l, _, _, _, len, _ in rows -> "mean response length", l, len ])
|> Figures.save outDir "preference-length" |> ignore

let table =
    { Header = [ "method"; "preference accuracy"; "implicit-reward accuracy"; "reward margin"; "mean length"; "KL estimate" ]
      Rows =
        [ box "SFT"; box sftAccuracy; box 0.5; box 0.0; box sftLength; box 0.0 ]
        :: [ for l, a, ir, m, len, kl in rows -> [ box l; box a; box ir; box m; box len; box kl ] ] }
Tables.save outDir "preference" $"Preference methods from one SFT model ({dataKind} pairs, beta {beta}, {alignSteps} steps): held-out per-token preference accuracy, implicit-reward accuracy and margin, mean greedy response length, per-token KL estimate to the SFT model" "tab:preference" table |> ignore
printfn "%s" (Tables.markdown table)

let get name = rows |> List.find (fun (l, _, _, _, _, _) -> l = name)
let _, _, _, _, dpoLen, _ = get "DPO"
let _, _, _, _, lnLen, _ = get "LN-DPO"
let _, _, _, _, simpoLen, _ = get "SimPO"
// The SFT model is its own reference: its implicit reward beta (dc - dr) is 0 on every pair, i.e. chance (0.5).
let raised = rows |> List.forall (fun (_, _, ir, _, _, _) -> ir > 0.5)
let perTokenRaised = rows |> List.forall (fun (_, a, _, _, _, _) -> a > sftAccuracy)
let lnShorter = lnLen < dpoLen
let verdict b = if b then "HELD" else "DID NOT HOLD"
printfn "data: %s pairs; beta %g; %d align steps from one SFT model" dataKind beta alignSteps
printfn "claim (DPO, LN-DPO, SimPO, KTO papers): every method raises held-out preference accuracy over the SFT model"
printfn "implicit-reward accuracy (SFT: 0.5, chance): %s -> %s" (rows |> List.map (fun (l, _, ir, _, _, _) -> $"{l} {ir:F3}") |> String.concat ", ") (verdict raised)
printfn "secondary: per-token likelihood accuracy: SFT %.3f; %s -> %s" sftAccuracy (rows |> List.map (fun (l, a, _, _, _, _) -> $"{l} {a:F3}") |> String.concat ", ") (verdict perTokenRaised)
printfn "claim (Hitchhiker's Guide to *PO): LN-DPO's mean response length is below DPO's on the same data"
printfn "mean response length: SFT %.1f, DPO %.1f, LN-DPO %.1f -> %s" sftLength dpoLen lnLen (verdict lnShorter)
printfn "secondary claim (SimPO, also length-normalised): SimPO's mean response length is below DPO's"
printfn "mean response length: DPO %.1f, SimPO %.1f -> %s" dpoLen simpoLen (verdict (simpoLen < dpoLen))
printfn "figures and table in %s" (Path.GetFullPath outDir)
if not (raised && lnShorter) then exit 3
