/// Issue #20, defect 1: a directory replace (checkpoints/last, final/, a merge's output) that a kill at any step leaves
/// whole, old or new. A kill is simulated exactly: at each step the fault seam copies the parent directory as the kill
/// would leave it, and recovery runs on the copy.
module Research.Tests.AtomicDirectoryTests

open System
open System.IO
open Expecto
open Research.Runs
open Research.Tests.TestUtil

let rec copyTree (src: string) (dst: string) =
    Directory.CreateDirectory dst |> ignore
    for f in Directory.GetFiles src do File.Copy(f, Path.Combine(dst, Path.GetFileName f))
    for d in Directory.GetDirectories src do copyTree d (Path.Combine(dst, Path.GetFileName d))

/// Runs f with the fault seam copying `parent` at every step of a directory replace; returns (step, copy) in order.
let withKillCopies (twoRenames: bool) (parent: string) (f: unit -> unit) =
    let copies = ResizeArray()
    AtomicFile.ForceTwoRenames.Value <- twoRenames
    AtomicFile.FaultHook.Value <- Action<string>(fun step ->
        let copy = tempDir $"killed-{step}"
        copyTree parent copy
        copies.Add((step, copy)))
    try f ()
    finally
        AtomicFile.FaultHook.Value <- null
        AtomicFile.ForceTwoRenames.Value <- false
    List.ofSeq copies

let private fill (text: string) (tmp: string) =
    for name in [ "a.txt"; "b.txt" ] do File.WriteAllText(Path.Combine(tmp, name), text)

let private contents dir =
    if Directory.Exists dir then Some [ for name in [ "a.txt"; "b.txt" ] -> File.ReadAllText(Path.Combine(dir, name)) ] else None

[<Tests>]
let tests =
    testList "ReliabilityDirs" [
        for twoRenames in [ false; true ] do
            let how = if twoRenames then "two renames (no exchange on this file system)" else "an atomic exchange"
            testCase $"a replace by {how} killed after any step leaves the directory whole, and recovery leaves nothing else" <| fun _ ->
                let parent = Path.Combine(tempDir "replace", "checkpoints")
                let last = Path.Combine(parent, "last")
                AtomicFile.WriteDirectory(last, fill "old")
                let kills = withKillCopies twoRenames parent (fun () -> AtomicFile.WriteDirectory(last, fill "new"))
                let steps = kills |> List.map fst
                Expect.equal steps (if twoRenames then [ "filled"; "moved-aside"; "moved-in"; "synced" ] else [ "filled"; "exchanged"; "synced" ]) "the steps"
                for step, copy in kills do
                    let target = Path.Combine(copy, "last")
                    AtomicFile.RecoverDirectory target |> ignore
                    let got = contents target
                    Expect.isTrue (got = Some [ "old"; "old" ] || got = Some [ "new"; "new" ]) $"killed after '{step}': checkpoints/last is whole (got {got})"
                    Expect.equal (Directory.GetFileSystemEntries copy |> Array.map Path.GetFileName) [| "last" |] $"killed after '{step}': no leftovers after recovery"
                Expect.equal (contents last) (Some [ "new"; "new" ]) "the new contents are in"
                Expect.equal (Directory.GetFileSystemEntries parent).Length 1 "nothing beside it"

        testCase "a first write killed after any step leaves no directory or the whole one" <| fun _ ->
            let parent = tempDir "first-write"
            let final = Path.Combine(parent, "final")
            let kills = withKillCopies false parent (fun () -> AtomicFile.WriteDirectory(final, fill "new"))
            Expect.equal (kills |> List.map fst) [ "filled"; "moved-in" ] "the steps"
            for step, copy in kills do
                let target = Path.Combine(copy, "final")
                AtomicFile.RecoverDirectory target |> ignore
                let got = contents target
                Expect.isTrue (got = None || got = Some [ "new"; "new" ]) $"killed after '{step}': never half a directory (got {got})"
                Expect.isLessThanOrEqual (Directory.GetFileSystemEntries copy).Length 1 "no leftovers"

        testCase "recovery keeps what a running process is still writing, and a failed fill leaves the old directory" <| fun _ ->
            let parent = tempDir "live-writer"
            let last = Path.Combine(parent, "last")
            AtomicFile.WriteDirectory(last, fill "old")
            let live = Path.Combine(parent, $"last.1.{Guid.NewGuid():N}.tmp")   // pid 1 runs in every container and machine
            Directory.CreateDirectory live |> ignore
            Expect.isEmpty (AtomicFile.RecoverDirectory last) "nothing to do"
            Expect.isTrue (Directory.Exists live) "a live process's temp directory is kept"
            Expect.throws (fun () -> AtomicFile.WriteDirectory(last, fun tmp -> fill "new" tmp; failwith "disk full")) "fill fails"
            Expect.equal (contents last) (Some [ "old"; "old" ]) "old contents kept"
            Expect.equal (Directory.GetFileSystemEntries parent |> Array.map Path.GetFileName |> Array.sort) ([| "last"; Path.GetFileName live |] |> Array.sort) "only the live one beside it"
    ]
