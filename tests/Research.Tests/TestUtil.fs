/// Small fixtures shared by the test lists: a micro model, temp directories, tensors from arrays.
module Research.Tests.TestUtil

open System
open System.IO
open System.Diagnostics
open TorchSharp
open Expecto
open Research.Models

/// Names of the test groups that run side by side (Expecto's testSequencedGroup: one test at a time within a group).
module Groups =
    /// Every list that trains models inside the test process. They take turns, so that at most one in-process training
    /// runs beside the unit tests: TorchSharp leaves the Scalars and Tensors that implicit conversions create to the GC,
    /// whose finalizer can free one while a native call still reads it ("Unknown scalar type", a SIGSEGV in retain_); the
    /// more threads allocate, the more often that race comes up. Lists that train in child processes run beside them.
    let inProcess = "in-process training"

/// A model small enough that a training step takes milliseconds.
let microConfig =
    ModelConfig(
        VocabSize = 259, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2,
        NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64)

let microModel (seed: int64) = new CausalLM(microConfig, seed)

/// The lines of a metrics.jsonl with their time fields removed: what two runs of the same training must share.
let metricsWithoutTime (path: string) =
    Research.Runs.MetricsLog.Read path
    |> Seq.map (fun o ->
        for f in Research.Runs.MetricsLog.TimeFields do o.Remove f |> ignore
        o.ToJsonString())
    |> List.ofSeq

let tempDir (name: string) =
    let d = Path.Combine(Path.GetTempPath(), "research-tests", $"{name}-{Guid.NewGuid():N}")
    Directory.CreateDirectory d |> ignore
    d

let ids (xs: int64 list) = torch.tensor(List.toArray xs, dtype = torch.int64).unsqueeze(0L)

let maxAbsDiff (a: torch.Tensor) (b: torch.Tensor) =
    use d = (a - b).abs().max()
    d.``to``(torch.float64).item<float>()

/// Asserts that f throws and that the message contains every given fragment.
let throwsWith<'e when 'e :> exn> (f: unit -> unit) (fragments: string list) (what: string) =
    let ex =
        try f (); None
        with :? 'e as e -> Some (e :> exn)
    match ex with
    | None -> failwithf "%s: expected %s" what typeof<'e>.Name
    | Some e ->
        for frag in fragments do
            if not (e.Message.Contains(frag: string)) then
                failwithf "%s: message %A lacks %A" what e.Message frag

/// The repository root: the first parent folder of the test binaries holding Research.sln.
let repoRoot =
    let rec up (d: DirectoryInfo) =
        if isNull d then failwith "Research.sln not found above the test binaries"
        elif File.Exists(Path.Combine(d.FullName, "Research.sln")) then d.FullName
        else up d.Parent
    up (DirectoryInfo AppContext.BaseDirectory)

/// Installs python3-torch/numpy/jinja2 (and OpenBLAS) once per process when /usr/bin/python3 lacks them (scripts/setup/python-refs.sh).
let ensurePythonRefs =
    lazy (
        let psi = ProcessStartInfo("sh", Path.Combine(repoRoot, "scripts", "setup", "python-refs.sh"), RedirectStandardError = true)
        use p = Process.Start psi
        let err = p.StandardError.ReadToEnd()
        p.WaitForExit()
        if p.ExitCode <> 0 then failwithf "scripts/setup/python-refs.sh failed (%d): %s" p.ExitCode err)

/// Runs a reproduction script through `research run` in its own process: exit code, stdout + stderr.
let runScript (workspace: string) (script: string) (args: string) =
    let cli = Path.Combine(AppContext.BaseDirectory, "research.dll")
    let psi = ProcessStartInfo("dotnet", $"\"{cli}\" run --workspace \"{workspace}\" \"{script}\" {args}", RedirectStandardOutput = true, RedirectStandardError = true)
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    p.ExitCode, out.Result + err.Result

/// The files a reproduction script must have written into its output folder.
let expectFiles (out: string) (names: string list) =
    for f in names do Expect.isTrue (File.Exists(Path.Combine(out, f))) $"{f} written"

/// a - b paired by seed over seeds 1..5, the 95% t interval of the difference lies below 0.
let pairedBelowZero (what: string) (a: Map<int64, float>) (b: Map<int64, float>) =
    Expect.equal (a |> Map.keys |> List.ofSeq) [ 1L .. 5L ] $"{what}: five seeds"
    let t = Research.Eval.Statistics.Paired([| for s in 1L .. 5L -> a[s] |], [| for s in 1L .. 5L -> b[s] |])
    Expect.isLessThan t.Difference.Upper 0.0 $"{what}: 95%% t interval of the paired difference below 0 ({t.Difference})"

/// The verdict line a reproduction printed for a claim (Claims.line): it starts with prefix and ends in HELD or NOT REPRODUCED.
let verdictLine (text: string) (prefix: string) =
    match text.Split('\n') |> Array.map (fun l -> l.TrimEnd()) |> Array.tryFind (fun l -> l.StartsWith prefix && (l.EndsWith "HELD" || l.EndsWith "NOT REPRODUCED")) with
    | Some l -> l
    | None -> failwithf "no verdict line starting %A in the output:\n%s" prefix text

/// A reproduction script printed a verdict line starting with prefix that ends in HELD (not DID NOT HOLD).
let expectHeld (text: string) (prefix: string) =
    Expect.isTrue (text.Split('\n') |> Array.exists (fun l -> l.StartsWith prefix && l.TrimEnd().EndsWith "HELD" && not (l.Contains "DID NOT"))) $"prints '{prefix} ... HELD'"
