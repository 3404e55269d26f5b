/// The code version in every stage key (Pipelines/StageCode.cs): a change to the sources that decide what a kind of stage
/// writes must be met by a decision recorded in fixtures/stage-code.json (bump the version, or keep it for a pure refactor),
/// and a changed version re-runs the stage and its descendants, saying why.
module Research.Tests.StageCodeTests

open System
open System.IO
open System.Security.Cryptography
open System.Text
open System.Text.Json.Nodes
open Expecto
open Research
open Research.Pipelines
open Research.Tests.TestUtil

let private fixturePath = Path.Combine(repoRoot, "tests", "Research.Tests", "fixtures", "stage-code.json")

/// The .cs files under each source (a file or a folder), in ordinal order.
let private files (sources: string list) =
    [ for s in sources do
        let full = Path.Combine(repoRoot, s)
        if File.Exists full then yield s
        elif Directory.Exists full then
            for f in Directory.GetFiles(full, "*.cs", SearchOption.AllDirectories) do
                let rel = Path.GetRelativePath(repoRoot, f).Replace('\\', '/')
                if not (rel.Contains "/bin/" || rel.Contains "/obj/") then yield rel   // build outputs (AssemblyInfo names the commit)
        else failwithf "stage-code.json names %s, which does not exist" s ]
    |> List.distinct |> List.sortWith (fun a b -> String.CompareOrdinal(a, b))

/// Digest of the code, ignoring whole-line comments, blank lines and indentation (a comment edit is not a code change).
let digest (sources: string list) =
    let sb = StringBuilder()
    for f in files sources do
        sb.Append(f).Append('\n') |> ignore
        for line in File.ReadAllLines(Path.Combine(repoRoot, f)) do
            let t = line.Trim()
            if t.Length > 0 && not (t.StartsWith "//") then sb.Append(t).Append('\n') |> ignore
    Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString()))).ToLowerInvariant()[..15]

let private sourcesOf (fixture: JsonNode) (kind: string) =
    [ for s in fixture["shared"].AsArray() -> s.GetValue<string>() ] @ [ for s in fixture["kinds"].[kind].["sources"].AsArray() -> s.GetValue<string>() ]

[<Tests>]
let tests =
    testList "StageCode" [
        testCase "every built-in kind's sources match the digest recorded with its version (bump StageCode.Versions on a change)" <| fun _ ->
            let fixture = JsonNode.Parse(File.ReadAllText fixturePath)
            // RESEARCH_UPDATE_STAGE_CODE=1 rewrites the digests after a change; the versions are still decided by hand.
            let update = Environment.GetEnvironmentVariable "RESEARCH_UPDATE_STAGE_CODE" = "1"
            let kinds = fixture["kinds"].AsObject() |> Seq.map (fun kv -> kv.Key) |> Seq.toList
            Expect.equal (Set.ofList kinds) (Set.ofSeq StageCode.Versions.Keys) "stage-code.json lists every built-in kind"
            let stale =
                [ for kind in kinds do
                    let entry = fixture["kinds"].[kind]
                    let now = digest (sourcesOf fixture kind)
                    if update then entry["sha256"] <- JsonValue.Create now
                    let recordedVersion = entry["version"].GetValue<int>()
                    let recorded = entry["sha256"].GetValue<string>()
                    if recordedVersion <> StageCode.Version kind then
                        yield $"{kind}: stage-code.json says version {recordedVersion} but StageCode.Versions has {StageCode.Version kind}; make them agree"
                    elif recorded <> now then
                        yield $"{kind}: its sources changed (digest {now}, recorded {recorded}); if what it writes can change, bump its version " +
                              "in src/Research.Core/Pipelines/StageCode.cs and in stage-code.json; then record the digest (RESEARCH_UPDATE_STAGE_CODE=1 does it)" ]
            if update then File.WriteAllText(fixturePath, fixture.ToJsonString(Text.Json.JsonSerializerOptions(WriteIndented = true)) + "\n")
            Expect.isEmpty stale (String.Join("\n", stale))

        testCase "a changed code version changes the stage's key and its descendants', not its ancestors'" <| fun _ ->
            let w = World.quick 40 1
            let start = pretrain w.General microConfig
            let a = (adapt (domain w.Finance) |> Stage.named "a") start
            let b = (adapt (domain w.Finance) |> Stage.named "b") a
            let v (bumped: string) (kind: string) = if kind = bumped then 2 else 1
            let keys version = [ for s in [ start; a; b ] -> Executor.Key(s, 1L, null, Func<string, int>(version)) ]
            let same = keys (v "none")
            let bumped = keys (v "adapt")
            Expect.equal bumped[0] same[0] "pretrain keeps its key"
            Expect.notEqual bumped[1] same[1] "adapt a re-runs"
            Expect.notEqual bumped[2] same[2] "and b below it"

        testCase "why a stage re-ran: code version, config fields, parents, data, files" <| fun _ ->
            let ing code (config: string) parents data files =
                RerunReason.Ingredients("align", code, JsonNode.Parse config, 3L, parents, data, files)
            let before = ing 1 """{"Train":{"LearningRate":0.001},"Mode":"Paired"}""" [| "tune-aaa" |] [| "prefs", "f1" |] ""
            Expect.equal (RerunReason.Explain(Some before |> Option.toObj, ing 2 """{"Train":{"LearningRate":0.001},"Mode":"Paired"}""" [| "tune-aaa" |] [| "prefs", "f1" |] "", [| "tune" |]))
                "code version of align 1 -> 2" "the code"
            Expect.equal (RerunReason.Explain(before, ing 1 """{"Train":{"LearningRate":0.0005},"Mode":"Paired"}""" [| "tune-bbb" |] [| "prefs", "f2" |] "x", [| "tune" |]))
                "Train.LearningRate 0.001 -> 0.0005; parent 'tune' changed; data 'prefs' changed; the files it reads changed" "config, parent, data, files"
            Expect.equal (RerunReason.Explain(null, before, [||])) "no earlier run of this stage" "first run"
    ]
