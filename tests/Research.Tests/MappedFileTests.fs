/// Issue #20, defect 9: a mapped safetensors file that shrinks while open is an error naming it, not SIGBUS.
module Research.Tests.MappedFileTests

open System.Collections.Generic
open System.IO
open Expecto
open TorchSharp
open Research.Models
open Research.Tests.TestUtil

/// A file of two 1 MiB tensors.
let private twoTensors () =
    let path = Path.Combine(tempDir "shrink", "model.safetensors")
    use a = torch.ones(262144L)
    use b = torch.full(262144L, 2.0f)
    Safetensors.Save(path, [ KeyValuePair("a", a); KeyValuePair("b", b) ])
    path

/// What a program that rewrites the file in place does first.
let private truncate (path: string) (length: int64) =
    use f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite ||| FileShare.Delete)
    f.SetLength length

[<Tests>]
let tests =
    testList "ReliabilityMaps" [
        testCase "a file truncated in place after it was opened is an error naming it, for a copy and for a zero-copy view" <| fun _ ->
            let path = twoTensors ()
            use file = SafetensorsFile.Open path
            use first = file.Read "a"
            Expect.equal (first.sum().item<float32>()) 262144.0f "read while whole"
            truncate path 4096L
            throwsWith<SafetensorsException> (fun () -> file.Read "b" |> ignore) [ path; "changed size"; "4096"; "renaming" ] "copy"
            throwsWith<SafetensorsException> (fun () -> file.View "b" |> ignore) [ path; "changed size" ] "view"

        testCase "a file replaced by rename while open keeps reading the contents it was opened with" <| fun _ ->
            let path = twoTensors ()
            use file = SafetensorsFile.Open path
            use other = torch.zeros(4L)
            Safetensors.Save(path, [ KeyValuePair("c", other) ])              // temp file + rename: the open inode is untouched
            use b = file.Read "b"
            Expect.equal (b.sum().item<float32>()) 524288.0f "the old contents"
    ]
